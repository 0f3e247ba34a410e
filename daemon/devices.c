/* SPDX-License-Identifier: MIT */
/*
 * Building the microscope the configuration names: the simulator or the
 * hardware drivers, wrapped by drivers/guard.h so that every device call
 * has a deadline and a device lost after a missed deadline is rebuilt
 * through a factory.  Runs on the scan thread (opening and homing block).
 */
#include "daemon/daemon.h"

#include <stdio.h>
#include <string.h>

static int
sim_cam(void *ctx, struct camera **out, struct ss_err *err)
{
    return sim_camera_new(ctx, out, err);
}

static int
sim_stage(void *ctx, struct stage **out, struct ss_err *err)
{
    return sim_stage_new(ctx, out, err);
}

static int
hw_cam(void *ctx, struct camera **out, struct ss_err *err)
{
    const struct hw_config *hw = ctx;

    return hw_camera_new(&hw->cam, out, err);
}

static int
hw_stage(void *ctx, struct stage **out, struct ss_err *err)
{
    const struct hw_config *hw = ctx;

    return hw_stage_new(&hw->stage, out, err);
}

int
daemon__microscope_home(struct microscope *m, struct ss_err *err)
{
    if (m->stage == NULL)
        return 0;
    return m->stage->ops->home(m->stage, err);
}

int
daemon__microscope_open(const struct dconf *c, struct hw_config *hw_keep,
                        struct microscope **out, struct ss_err *err)
{
    struct guard_factory f;
    struct microscope *m = NULL;
    int rc;

    *out = NULL;
    if (c->simulator) {
        rc = sim_microscope_new(&c->sim, &m, err);
        if (rc < 0)
            return err_prefix(err, "simulated microscope");
        f.new_camera = sim_cam;
        f.new_stage = sim_stage;
        f.ctx = sim_of(m);
    } else {
        *hw_keep = c->hw;
        rc = hw_microscope_new(hw_keep, &m, err);
        if (rc < 0)
            return rc;
        f.new_camera = hw_cam;
        f.new_stage = hw_stage;
        f.ctx = hw_keep;
    }
    rc = guard_microscope_wrap(m, &c->guard, &f, err);
    if (rc < 0) {
        microscope_free(m);
        return rc;
    }
    log_notice("scan", "microscope built driver=%s camera=%s stage=%s "
               "pixel_um=%g objective=%s", c->simulator ? "simulator"
               : "hardware", m->cam != NULL ? m->cam->model : "-",
               m->stage != NULL ? m->stage->model : "-", m->pixel_um,
               m->objective);
    *out = m;
    return 0;
}

static unsigned long
fnv1a(const char *s)
{
    unsigned long h = 2166136261UL;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619UL;
    return h & 0x7fffffff;
}

void
daemon__sim_spec(const struct dconf *c, const struct cat_scan *s, char *buf,
                 size_t len)
{
    size_t n;

    if (s->image[0] != '\0') {
        n = (size_t)snprintf(buf, len, "%s", s->image);
        if (strncmp(s->image, "phantom:", 8) != 0 &&
            strstr(s->image, ":stain=") == NULL && n < len)
            n += (size_t)snprintf(buf + n, len - n, ":stain=%s", s->stain);
    } else {
        n = (size_t)snprintf(buf, len, "phantom:%s:seed=%lu:w_mm=%g:"
                             "h_mm=%g", s->stain,
                             fnv1a(s->slide) ^ (unsigned long)(c->sim.seed &
                                                               0x7fffffff),
                             c->phantom_w_mm, c->phantom_h_mm);
    }
    if (strstr(buf, ":id=") == NULL && n < len)
        snprintf(buf + n, len - n, ":id=%s", s->slide);
}
