/* SPDX-License-Identifier: MIT */
/*
 * slidescand's configuration: an INI file (inih) over built-in defaults.
 * [daemon], [microscope], [scan] and [analysis] are described by a key
 * table here; [profile HE|KI67|CK] are stain profiles; every key of
 * [simulator] goes to sim_config_set(), of [camera] and [stage] to
 * hw_config_set(), of [deadlines] to guard_policy_set(), of [storage] to
 * space_policy_set(), so each module documents and checks its own keys.
 * The first error stops the start with "FILE:LINE: [section] key: cause".
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum ktype { K_STR, K_INT, K_DBL, K_BOOL, K_MODE, K_LEVEL, K_DRIVER };

struct key {
    const char *section, *name;
    enum ktype type;
    size_t off, size;               /* into struct dconf */
    double min, max;
    bool reload;                    /* applied by SIGHUP */
};

#define O(f) offsetof(struct dconf, f), sizeof(((struct dconf *)0)->f)

static const struct key keys[] = {
    { "daemon", "socket", K_STR, O(socket_path), 0, 0, false },
    { "daemon", "socket_mode", K_MODE, O(socket_mode), 0, 0777, false },
    { "daemon", "data_dir", K_STR, O(data_dir), 0, 0, false },
    { "daemon", "catalogue", K_STR, O(catalogue), 0, 0, false },
    { "daemon", "group", K_STR, O(group), 0, 0, false },
    { "daemon", "worker", K_STR, O(worker), 0, 0, true },
    { "daemon", "log_level", K_LEVEL, O(log_level), 0, 0, true },
    { "daemon", "debug", K_STR, O(debug), 0, 0, true },
    { "daemon", "device_retry_s", K_DBL, O(device_retry_s), 0.1, 3600,
      true },
    { "daemon", "watch_drop_kb", K_INT, O(watch_drop_kb), 1, 1 << 20,
      true },
    { "daemon", "watch_close_kb", K_INT, O(watch_close_kb), 1, 1 << 20,
      true },
    { "microscope", "driver", K_DRIVER, O(simulator), 0, 0, false },
    { "microscope", "objective", K_STR, O(objective), 0, 0, false },
    { "microscope", "phantom_w_mm", K_DBL, O(phantom_w_mm), 0.2, 75, true },
    { "microscope", "phantom_h_mm", K_DBL, O(phantom_h_mm), 0.2, 25, true },
    { "scan", "overlap", K_DBL, O(acq.overlap), 0.01, 0.5, true },
    { "scan", "calib_frames", K_INT, O(acq.calib_frames), 1, 64, true },
    { "scan", "blank_x_um", K_DBL, O(acq.blank_x_um), -1e6, 1e6, true },
    { "scan", "blank_y_um", K_DBL, O(acq.blank_y_um), -1e6, 1e6, true },
    { "scan", "settle_ms", K_DBL, O(acq.settle_ms), 0, 10000, true },
    { "scan", "backlash_um", K_DBL, O(acq.backlash_um), 0, 1000, true },
    { "scan", "max_retakes", K_INT, O(acq.max_retakes), 0, 10, true },
    { "scan", "sharp_rel_min", K_DBL, O(acq.sharp_rel_min), 0, 1, true },
    { "scan", "backlash_z_um", K_DBL, O(acq.backlash_z_um), 0, 100, true },
    { "scan", "settle_tol_um", K_DBL, O(acq.settle_tol_um), 0, 100, true },
    { "scan", "white", K_DBL, O(acq.white), 64, 255, true },
    { "scan", "focus_z_um", K_DBL, O(acq.focus_z_um), -1e4, 1e4, true },
    { "scan", "focus_range_um", K_DBL, O(acq.focus_range_um), 1, 1000,
      true },
    { "scan", "focus_points", K_INT, O(acq.focus_points), 0, 1000, true },
    { "scan", "focus_exposure_ms", K_DBL, O(acq.focus_exposure_ms), 0,
      60000, true },
    { "scan", "refocus_range_um", K_DBL, O(acq.refocus_range_um), 0, 1000,
      true },
    { "scan", "calib_max_age_h", K_DBL, O(calib_max_age_h), 0, 1e5, true },
    { "scan", "keep_tiles", K_BOOL, O(keep_tiles), 0, 0, true },
    { "scan", "wsi_quality", K_INT, O(wsi_quality), 50, 100, true },
    { "scan", "glass_w_mm", K_DBL, O(glass_w_mm), 1, 1000, true },
    { "scan", "glass_h_mm", K_DBL, O(glass_h_mm), 1, 1000, true },
    { "scan", "max_stage_err_um", K_DBL, O(max_stage_err_um), 0, 1000,
      true },
    { "analysis", "auto", K_BOOL, O(auto_analyse), 0, 0, true },
    { "analysis", "model", K_STR, O(model), 0, 0, true },
    { "analysis", "nice", K_INT, O(worker_nice), 0, 19, true },
    { "analysis", "restarts", K_INT, O(worker_restarts), 0, 10, true },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const stain_names[NSTAINS] = { "HE", "KI67", "CK" };

int
daemon__stain_index(const char *stain)
{
    int i;

    for (i = 0; stain != NULL && i < NSTAINS; i++)
        if (strcmp(stain_names[i], stain) == 0)
            return i;
    return -1;
}

void
daemon__conf_default(struct dconf *c)
{
    int i;

    memset(c, 0, sizeof(*c));
    snprintf(c->socket_path, sizeof(c->socket_path), "%s",
             "/run/slidescan/slidescand.sock");
    c->socket_mode = 0660;
    snprintf(c->data_dir, sizeof(c->data_dir), "%s", "/var/lib/slidescan");
    snprintf(c->group, sizeof(c->group), "%s", "slidescan");
    c->log_level = LOG_LVL_INFO;
    c->device_retry_s = 10;
    c->watch_drop_kb = 64;
    c->watch_close_kb = 1024;
    c->simulator = true;
    snprintf(c->objective, sizeof(c->objective), "%s", "20x");
    c->phantom_w_mm = 4;
    c->phantom_h_mm = 3;
    sim_config_default(&c->sim);
    hw_config_default(&c->hw);
    guard_policy_default(&c->guard);
    space_policy_default(&c->space);
    for (i = 0; i < NSTAINS; i++) {
        acq_profile_default(&c->profile[i], stain_names[i], NULL);
        c->profile[i].objective[0] = '\0';
    }
    acq_options_default(&c->acq);
    c->calib_max_age_h = 24;
    c->keep_tiles = false;
    c->wsi_quality = 90;
    c->glass_w_mm = 76;
    c->glass_h_mm = 26;
    c->max_stage_err_um = 20;
    c->auto_analyse = true;
    c->worker_nice = 10;
    c->worker_restarts = 2;
}

struct parse {
    struct dconf *c;
    FILE *f;
    int lines;                      /* complete lines read so far */
    bool continued;                 /* the last line began with a blank */
    int fail_line;
    char msg[SS_ERR_MSG_MAX];       /* the first error, without FILE:LINE */
    bool failed;
};

int
daemon__conf_line(const struct dconf *c, const char *section,
                  const char *key)
{
    char name[sizeof(c->where[0].key)];
    int i;

    snprintf(name, sizeof(name), "%s.%s", section, key);
    for (i = 0; i < c->nwhere; i++)
        if (strcmp(c->where[i].key, name) == 0)
            return c->where[i].line;
    return 0;
}

/* Remembers where [section] key was set; the line of an earlier setting
 * of it, or 0. */
static int
conf_where(struct dconf *c, const char *section, const char *key, int line)
{
    int before = daemon__conf_line(c, section, key);

    if (before == 0 && c->nwhere < DCONF_LINES) {
        snprintf(c->where[c->nwhere].key, sizeof(c->where[0].key), "%s.%s",
                 section, key);
        c->where[c->nwhere++].line = line;
    }
    return before;
}

int
daemon__conf_err(const struct dconf *c, struct ss_err *err,
                 const char *section, const char *key, const char *fmt,
                 ...)
{
    char cause[SS_ERR_MSG_MAX], at[PATH_MAX + 16] = "";
    int line = daemon__conf_line(c, section, key);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    if (c->file[0] != '\0' && line > 0)
        snprintf(at, sizeof(at), "%s:%d: ", c->file, line);
    else if (c->file[0] != '\0')
        snprintf(at, sizeof(at), "%s: ", c->file);
    return err_set(err, SS_ECONFIG, "%s[%s] %s: %s", at, section, key,
                   cause);
}

static int
fail(struct parse *p, const char *section, const char *name,
     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
fail(struct parse *p, const char *section, const char *name,
     const char *fmt, ...)
{
    char cause[SS_ERR_MSG_MAX];
    va_list ap;

    if (p->failed)
        return 0;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    snprintf(p->msg, sizeof(p->msg), "[%s] %s: %s", section, name, cause);
    p->failed = true;
    p->fail_line = p->lines;
    return 0;
}

/* An error whose message already names section and key. */
static int
fail_named(struct parse *p, const char *msg)
{
    if (p->failed)
        return 0;
    snprintf(p->msg, sizeof(p->msg), "%s", msg);
    p->failed = true;
    p->fail_line = p->lines;
    return 0;
}

static bool
parse_double(const char *v, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(v, &end);
    return errno == 0 && end != v && *end == '\0' && isfinite(*out);
}

static int
parse_bool(const char *v)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    size_t i;

    for (i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int
parse_level(const char *v, enum log_level *out)
{
    static const struct { const char *n; enum log_level l; } levels[] = {
        { "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },
        { "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
        { "debug", LOG_LVL_DEBUG },
    };
    size_t i;

    for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcmp(levels[i].n, v) == 0) {
            *out = levels[i].l;
            return 0;
        }
    return -1;
}

static int
set_number(struct parse *p, const struct key *k, const char *v, void *dst)
{
    double d;

    if (!parse_double(v, &d))
        return fail(p, k->section, k->name, "'%s' is not a number", v);
    if (d < k->min || d > k->max)
        return fail(p, k->section, k->name, "%s is outside %g..%g", v,
                    k->min, k->max);
    if (k->type == K_INT) {
        if (d != floor(d))
            return fail(p, k->section, k->name, "'%s' is not an integer",
                        v);
        *(int *)dst = (int)d;
    } else {
        *(double *)dst = d;
    }
    return 1;
}

static int
set_key(struct parse *p, const struct key *k, const char *v)
{
    void *dst = (char *)p->c + k->off;
    char *end;
    long mode;
    int b;

    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->size)
            return fail(p, k->section, k->name, "longer than %zu "
                        "characters", k->size - 1);
        snprintf(dst, k->size, "%s", v);
        return 1;
    case K_INT:
    case K_DBL:
        return set_number(p, k, v, dst);
    case K_BOOL:
        b = parse_bool(v);
        if (b < 0)
            return fail(p, k->section, k->name, "'%s' is not yes or no", v);
        *(bool *)dst = b;
        return 1;
    case K_MODE:
        mode = strtol(v, &end, 8);
        if (*v == '\0' || *end != '\0' || mode < 0 || mode > 0777)
            return fail(p, k->section, k->name, "'%s' is not an octal mode "
                        "like 0660", v);
        *(int *)dst = (int)mode;
        return 1;
    case K_LEVEL:
        if (parse_level(v, dst) < 0)
            return fail(p, k->section, k->name, "'%s' is not one of error, "
                        "warn, notice, info, debug", v);
        return 1;
    case K_DRIVER:
        if (strcmp(v, "simulator") != 0 && strcmp(v, "hardware") != 0)
            return fail(p, k->section, k->name, "'%s' is not simulator or "
                        "hardware", v);
        *(bool *)dst = strcmp(v, "simulator") == 0;
        return 1;
    }
    return fail(p, k->section, k->name, "unknown key type");
}

static int
parse_wb(const char *v, double wb[3])
{
    double t[3];
    int n = 0;

    if (sscanf(v, "%lf , %lf , %lf %n", &t[0], &t[1], &t[2], &n) != 3 ||
        v[n] != '\0')
        return -1;
    if (!(t[0] > 0 && t[1] > 0 && t[2] > 0 && t[0] < 16 && t[1] < 16 &&
          t[2] < 16))
        return -1;
    memcpy(wb, t, sizeof(t));
    return 0;
}

static int
set_profile(struct parse *p, const char *section, const char *name,
            const char *v)
{
    int i = daemon__stain_index(section + strlen("profile "));
    struct acq_profile *pr;
    double d;

    if (i < 0)
        return fail(p, section, name, "unknown stain; profiles are HE, "
                    "KI67 and CK");
    pr = &p->c->profile[i];
    if (strcmp(name, "exposure_ms") == 0 || strcmp(name, "gain") == 0) {
        if (!parse_double(v, &d) || d <= 0 || d > 60000)
            return fail(p, section, name, "'%s' is not a number in "
                        "(0, 60000]", v);
        *(name[0] == 'e' ? &pr->exposure_ms : &pr->gain) = d;
        return 1;
    }
    if (strcmp(name, "wb") == 0) {
        if (parse_wb(v, pr->wb) < 0)
            return fail(p, section, name, "'%s' is not three positive "
                        "multipliers R, G, B like 1.0, 1.0, 1.0", v);
        return 1;
    }
    if (strcmp(name, "objective") == 0) {
        if (strlen(v) >= sizeof(pr->objective))
            return fail(p, section, name, "'%s' is too long", v);
        snprintf(pr->objective, sizeof(pr->objective), "%s", v);
        return 1;
    }
    return fail(p, section, name, "unknown key; a profile has "
                "exposure_ms, gain, wb and objective");
}

static int
forward(struct parse *p, const char *section, const char *name,
        const char *v)
{
    struct ss_err e;
    int rc;

    err_clear(&e);
    if (strcmp(section, "simulator") == 0)
        rc = sim_config_set(&p->c->sim, name, v, &e);
    else if (strcmp(section, "deadlines") == 0)
        rc = guard_policy_set(&p->c->guard, name, v, &e);
    else if (strcmp(section, "storage") == 0)
        rc = space_policy_set(&p->c->space, name, v, &e);
    else
        rc = hw_config_set(&p->c->hw, section, name, v, &e);
    /* drivers/hw names section and key itself; the others give only the
     * cause. */
    if (rc < 0 && e.msg[0] == '[')
        return fail_named(p, e.msg);
    /* guard_policy_set() names its key; fail() names it already. */
    if (rc < 0 && strncmp(e.msg, name, strlen(name)) == 0 &&
        strncmp(e.msg + strlen(name), ": ", 2) == 0)
        return fail(p, section, name, "%s", e.msg + strlen(name) + 2);
    if (rc < 0)
        return fail(p, section, name, "%s", e.msg);
    return 1;
}

static int
handler(void *user, const char *section, const char *name, const char *v)
{
    struct parse *p = user;
    size_t i;
    int before;

    if (p->failed)
        return 0;
    if (p->continued)
        return fail(p, section, name, "a continuation line (it begins "
                    "with a blank); write the value on the key's line");
    before = conf_where(p->c, section, name, p->lines);
    if (before > 0)
        return fail(p, section, name, "set again; it is already set on "
                    "line %d", before);
    if (strncmp(section, "profile ", 8) == 0)
        return set_profile(p, section, name, v);
    if (strcmp(section, "simulator") == 0 || strcmp(section, "camera") == 0 ||
        strcmp(section, "stage") == 0 || strcmp(section, "deadlines") == 0 ||
        strcmp(section, "storage") == 0)
        return forward(p, section, name, v);
    for (i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        if (strcmp(keys[i].name, name) == 0)
            return set_key(p, &keys[i], v);
    }
    for (i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0)
            return fail(p, section, name, "unknown key");
    return fail(p, section, name, "unknown section");
}

/* Cross-checks after the whole file is read; each error names the line
 * of the key it blames. */
static int
check(struct dconf *c, struct ss_err *err)
{
    char section[32];
    const char *key;
    struct ss_err e;
    int i;

    if (c->socket_path[0] != '/')
        return daemon__conf_err(c, err, "daemon", "socket", "'%s' is not "
                                "an absolute path", c->socket_path);
    if (c->data_dir[0] != '/')
        return daemon__conf_err(c, err, "daemon", "data_dir", "'%s' is not "
                                "an absolute path", c->data_dir);
    if (c->catalogue[0] != '\0' && c->catalogue[0] != '/')
        return daemon__conf_err(c, err, "daemon", "catalogue", "'%s' is "
                                "not an absolute path", c->catalogue);
    if (c->watch_close_kb <= c->watch_drop_kb)
        return daemon__conf_line(c, "daemon", "watch_close_kb") > 0 ||
               daemon__conf_line(c, "daemon", "watch_drop_kb") == 0
               ? daemon__conf_err(c, err, "daemon", "watch_close_kb",
                                  "%d must be above watch_drop_kb (%d)",
                                  c->watch_close_kb, c->watch_drop_kb)
               : daemon__conf_err(c, err, "daemon", "watch_drop_kb",
                                  "%d must be below watch_close_kb (%d)",
                                  c->watch_drop_kb, c->watch_close_kb);
    if (c->simulator &&
        sim_config_set(&c->sim, "objective", c->objective, &e) < 0)
        return daemon__conf_err(c, err, "microscope", "objective", "%s",
                                e.msg);
    if (!c->simulator && hw_config_check(&c->hw, &key, &e) < 0)
        return daemon__conf_err(c, err, "stage", key, "%s", e.msg);
    for (i = 0; i < NSTAINS; i++) {
        struct acq_profile *p = &c->profile[i];
        if (p->objective[0] == '\0')
            snprintf(p->objective, sizeof(p->objective), "%s",
                     c->objective);
        snprintf(section, sizeof(section), "profile %s", p->stain);
        if (strcmp(p->objective, c->objective) != 0)
            return daemon__conf_err(c, err, section, "objective", "%s, but "
                                    "the microscope has %s ([microscope] "
                                    "objective)", p->objective,
                                    c->objective);
    }
    return 0;
}

/* inih's line reader, counting lines so errors found by the handler can
 * name theirs (inih reports only its own syntax errors by line). */
static char *
read_line(char *str, int num, void *stream)
{
    struct parse *p = stream;
    char *r = fgets(str, num, p->f);
    size_t n;

    if (r != NULL) {
        n = strlen(r);
        if (n > 0 && r[n - 1] == '\n')
            p->lines++;
        p->continued = (r[0] == ' ' || r[0] == '\t') &&
                       strspn(r, " \t\r\n") < n;
    }
    return r;
}

int
daemon__conf_load(const char *path, struct dconf *c, struct ss_err *err)
{
    struct parse p;
    struct stat st;
    FILE *f;
    int line;

    memset(&p, 0, sizeof(p));
    p.c = c;
    snprintf(c->file, sizeof(c->file), "%s", path);
    c->nwhere = 0;
    f = fopen(path, "r");
    if (f == NULL)
        return err_set(err, errno == ENOENT ? -ENOENT : SS_ECONFIG,
                       "%s: cannot read: %s", path, strerror(errno));
    /* A directory opens and reads as empty: refuse it, or the defaults
     * would silently stand in for the configuration. */
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(err, SS_ECONFIG, "%s: cannot read: %s", path,
                       S_ISDIR(st.st_mode) ? "is a directory"
                                           : "not a regular file");
    }
    p.f = f;
    line = ini_parse_stream(read_line, &p, handler, &p);
    fclose(f);
    if (line < 0)
        return err_set(err, SS_ECONFIG, "%s: cannot parse (out of memory)",
                       path);
    if (line > 0 && (!p.failed || line < p.fail_line))
        return err_set(err, SS_ECONFIG, "%s:%d: not a section, key = value "
                       "or comment", path, line);
    if (p.failed)
        return err_set(err, SS_ECONFIG, "%s:%d: %s", path, p.fail_line,
                       p.msg);
    return check(c, err);
}

static void
add_name(char *buf, size_t len, const char *name)
{
    size_t n = strlen(buf);

    if (strstr(buf, name) != NULL)
        return;
    snprintf(buf + n, len - n, "%s%s", n > 0 ? ", " : "", name);
}

static bool
key_differs(const struct key *k, const struct dconf *a, const struct dconf *b)
{
    return memcmp((const char *)a + k->off, (const char *)b + k->off,
                  k->size) != 0;
}

void
daemon__conf_diff(const struct dconf *now, const struct dconf *next,
                  char *applied, size_t alen, char *restart, size_t rlen)
{
    char name[64];
    size_t i;

    applied[0] = restart[0] = '\0';
    for (i = 0; i < NKEYS; i++) {
        if (!key_differs(&keys[i], now, next))
            continue;
        snprintf(name, sizeof(name), "%s.%s", keys[i].section,
                 keys[i].name);
        if (keys[i].reload)
            add_name(applied, alen, name);
        else
            add_name(restart, rlen, name);
    }
    if (memcmp(now->profile, next->profile, sizeof(now->profile)) != 0)
        add_name(applied, alen, "profiles");
    if (memcmp(&now->guard, &next->guard, sizeof(now->guard)) != 0)
        add_name(applied, alen, "deadlines");
    if (memcmp(&now->space, &next->space, sizeof(now->space)) != 0)
        add_name(applied, alen, "storage");
    if (memcmp(&now->sim, &next->sim, sizeof(now->sim)) != 0)
        add_name(restart, rlen, "simulator");
    if (memcmp(&now->hw, &next->hw, sizeof(now->hw)) != 0)
        add_name(restart, rlen, "camera/stage");
}

void
daemon__worker_path(const struct dconf *c, char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n;

    if (c->worker[0] != '\0') {
        snprintf(buf, len, "%s", c->worker);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(buf, len, "%s", "slidescan-worker");
        return;
    }
    self[n] = '\0';
    snprintf(buf, len, "%s/slidescan-worker", dirname(self));
}
