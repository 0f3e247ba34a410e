/* SPDX-License-Identifier: MIT */
/*
 * The slide reader: one way for every program to read whole-slide images
 * and plain images by their content, whatever their name says.  Back ends,
 * tried in this order:
 *
 *   1. OpenSlide, when it recognises the vendor (Aperio, Hamamatsu, our
 *      own pyramids, generic tiled TIFF, ...);
 *   2. libtiff, for tiled or stripped TIFFs OpenSlide does not take
 *      (OME-TIFF exports, stripped TIFFs, TIFFs with SubIFD pyramids).
 *      JPEG tiles are read raw and decoded by TurboJPEG, so the colour
 *      space comes from the JPEG stream (JFIF and Adobe markers,
 *      component ids) and the Photometric tag decides only when the
 *      stream says nothing; other compressions go through libtiff's own
 *      decoders;
 *   3. plain PNG and JPEG files.
 *
 * Regions are decoded on demand, one tile or strip at a time, so a large
 * TIFF is never loaded whole.  Every region comes out as RGB U8; pixels
 * outside the image and transparent pixels are the slide's background
 * colour.  The pixel size comes from, in order: an explicit override, the
 * OpenSlide property openslide.mpp-x, the OME-XML PhysicalSizeX (with its
 * unit), the TIFF X resolution with a centimetre or inch unit (72 and 96
 * dpi placeholders and values outside 0.05..100 µm/px are ignored).
 *
 * Every error names the file and the cause, e.g. "x.ome.tif: tile 3 of
 * level 0: corrupt JPEG: Bogus marker length".  A slide handle may be used
 * from several threads; reads are serialised inside.
 * storage/README-slide.md has the details and the migration notes.
 */
#ifndef SS_STORAGE_SLIDE_H
#define SS_STORAGE_SLIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

#define SLIDE_MAX_LEVELS 32

/* Pixel sizes outside this range in a file's metadata are not believed. */
#define SLIDE_MPP_MIN 0.05
#define SLIDE_MPP_MAX 100.0

/* Where the pixel size of an open slide came from. */
enum slide_mpp_from {
    SLIDE_MPP_NONE = 0,             /* not known: slide_mpp() is 0 */
    SLIDE_MPP_OVERRIDE,             /* slide_opts.mpp or "PATH@MPP" */
    SLIDE_MPP_OPENSLIDE,            /* openslide.mpp-x */
    SLIDE_MPP_OME,                  /* OME-XML Pixels PhysicalSizeX */
    SLIDE_MPP_TIFF,                 /* TIFF XResolution, ResolutionUnit */
};

/* Which back ends slide_open() may use. */
enum slide_backend {
    SLIDE_BACKEND_ANY = 0,          /* by content, OpenSlide first */
    SLIDE_BACKEND_LIBTIFF,          /* TIFFs through libtiff only, even
                                       those OpenSlide reads (for tools
                                       and cross-checks) */
};

struct slide_opts {
    double mpp;                     /* > 0: replaces the file's pixel size */
    bool need_mpp;                  /* fail when no pixel size is known */
    const char *mpp_hint;           /* how a user states one, ends the
                                       "states no pixel size" message */
    uint8_t background[3];          /* outside the image, transparent */
    enum slide_backend backend;
};

/* Defaults: no override, need_mpp true, hint "give it with --mpp or as
 * FILE@MPP", white background, any back end. */
void slide_opts_default(struct slide_opts *o);

struct slide;

/* Opens the file at path by content.  o may be NULL (defaults).  Errors,
 * each naming the file: -errno when it cannot be opened, SS_EFORMAT when
 * it is not a readable slide (text, DICOM, unsupported compression, ...)
 * or, with o->need_mpp, when no pixel size is known.  The file is checked
 * at open as far as it can be without decoding pixels. */
int slide_open(const char *path, const struct slide_opts *o,
               struct slide **out, struct ss_err *err);

/* Like slide_open(), but spec may end in "@MPP" (e.g. "x.tif@0.5"), a
 * pixel size in µm that overrides the file's own; o->mpp, when > 0, wins
 * over the spec.  A spec that names an existing file is taken whole. */
int slide_open_spec(const char *spec, const struct slide_opts *o,
                    struct slide **out, struct ss_err *err);

/* Splits "PATH@MPP" into path and *mpp (0 when there is no numeric
 * suffix, or when spec names an existing file).  -EINVAL when the suffix
 * is a number outside (0, 1000] µm, -ENAMETOOLONG when path does not
 * fit. */
int slide_spec_parse(const char *spec, char *path, size_t path_len,
                     double *mpp, struct ss_err *err);

/* Closes; NULL is a no-op. */
void slide_close(struct slide *s);

/* The file's path (without any "@MPP"), valid until slide_close(). */
const char *slide_path(const struct slide *s);

/* The back end and format: the OpenSlide vendor ("aperio",
 * "generic-tiff", ...), "ome-tiff", "tiff", "png" or "jpeg". */
const char *slide_format(const struct slide *s);

/* The stain the file declares in its own metadata, as written there
 * (an Aperio ImageDescription's "Stain = KI67", which slidescan's own
 * slides carry), or NULL when it declares none.  Other formats state no
 * stain the reader knows of. */
const char *slide_stain(const struct slide *s);

/* The stain names a and b (either may be NULL) name the same stain:
 * compared without case and without anything but letters and digits, so
 * "H&E" is "HE" and "Ki-67" is "KI67".  NULL matches only NULL. */
bool slide_stain_same(const char *a, const char *b);

/* Parses an Aperio ImageDescription's "|Stain = X|" field into stain
 * (trimmed; "" when absent or empty).  Exposed for tests. */
void slide_aperio_stain(const char *desc, char *stain, size_t len);

/* µm per level-0 pixel (0 when unknown), and where it came from. */
double slide_mpp(const struct slide *s);
enum slide_mpp_from slide_mpp_source(const struct slide *s);
const char *slide_mpp_source_name(enum slide_mpp_from f);

/* A given pixel size this far (relative) from the file's own contradicts
 * it. */
#define SLIDE_MPP_SAME 0.01

/* The pixel size the file itself states (0 when none), and where it is
 * stated, also when slide_opts.mpp overrides it. */
double slide_stated_mpp(const struct slide *s, enum slide_mpp_from *from);

/* A given pixel size against the one the file states: -EDOM, naming the
 * file, both values and where the file states its own, then force_hint
 * (how to insist, e.g. "add --force-mpp to scan at 0.25 anyway"), when
 * they differ by more than SLIDE_MPP_SAME and force is false.  0 when
 * they agree, when the file states none, or when forced (then a warning
 * is logged). */
int slide_mpp_given_check(const struct slide *s, double given, bool force,
                          const char *force_hint, struct ss_err *err);

/* Pyramid levels, level 0 the largest.  Sizes are in that level's pixels;
 * the downsample is level-0 pixels per level pixel (1 for level 0). */
int slide_level_count(const struct slide *s);
void slide_level_size(const struct slide *s, int level, int64_t *w,
                      int64_t *h);
double slide_level_downsample(const struct slide *s, int level);

/* The level with the largest downsample not above ds (level 0 when every
 * level is finer), the one to read and reduce for a wanted resolution. */
int slide_best_level(const struct slide *s, double ds);

/* The colour of pixels outside the image and of transparent pixels. */
void slide_set_background(struct slide *s, const uint8_t rgb[3]);

/* Reads w × h pixels of `level` into rgb (w * h * 3 bytes, row stride
 * w * 3).  (x0, y0) is the top-left corner in level-0 pixels, as in
 * OpenSlide; it is divided by the level's downsample.  Any rectangle is
 * allowed; parts outside the image are background.  Errors name the file
 * and the tile, strip or position that failed. */
int slide_read(struct slide *s, int level, int64_t x0, int64_t y0, int w,
               int h, uint8_t *rgb, struct ss_err *err);

/* The same into a new RGB U8 image. */
int slide_read_img(struct slide *s, int level, int64_t x0, int64_t y0,
                   int w, int h, struct img **out, struct ss_err *err);

/* An associated image ("label", "macro", "thumbnail") as RGB U8, or
 * *out = NULL and 0 when the slide has none of that name.  Only OpenSlide
 * slides have associated images. */
int slide_associated(struct slide *s, const char *name, struct img **out,
                     struct ss_err *err);

/* ---- pixel-size metadata (exposed for tests and tools) ------------------ */

/* The PhysicalSizeX of the first Pixels element of an OME-XML document in
 * µm (PhysicalSizeXUnit µm by default; nm, mm, cm, m, Å, pm converted).
 * Returns 1 and sets *mpp when found and within SLIDE_MPP_MIN..MAX; 0
 * when absent, not a number, in an unknown unit or implausible, with the
 * reason (static text) in *why (*mpp then holds the implausible value, or
 * 0). */
int slide_ome_mpp(const char *xml, double *mpp, const char **why);

/* µm per pixel from a TIFF XResolution and ResolutionUnit (2 inch, 3
 * centimetre).  Returns 1 when plausible; 0 for no unit, the 72 or 96 dpi
 * placeholders, and values outside SLIDE_MPP_MIN..SLIDE_MPP_MAX, with a
 * reason (static text) in why. */
int slide_tiff_res_mpp(double res, int unit, double *mpp, const char **why);

#endif
