/* SPDX-License-Identifier: MIT */
/*
 * The hardware microscope: the configured camera and stage, opened, on
 * the real clock.  A configured device that cannot be opened fails the
 * whole call with its own message; nothing is replaced by a simulator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/hw/hw_internal.h"

static int
open_camera(const struct hw_config *c, struct microscope *m,
            struct ss_err *err)
{
    int rc;

    if (!c->cam.enabled)
        return 0;
    rc = hw_camera_new(&c->cam, &m->cam, err);
    if (rc == 0)
        rc = m->cam->ops->open(m->cam, err);
    if (rc != 0) {
        camera_free(m->cam);
        m->cam = NULL;
    }
    return rc;
}

static int
open_stage(const struct hw_config *c, struct microscope *m,
           struct ss_err *err)
{
    int rc;

    if (c->stage.dialect == HW_STAGE_NONE)
        return 0;
    rc = hw_stage_new(&c->stage, &m->stage, err);
    if (rc == 0)
        rc = m->stage->ops->open(m->stage, err);
    if (rc != 0) {
        stage_free(m->stage);
        m->stage = NULL;
    }
    return rc;
}

int
hw_microscope_new(const struct hw_config *c, struct microscope **out,
                  struct ss_err *err)
{
    struct microscope *m;
    int rc;

    *out = NULL;
    if (!c->cam.enabled && c->stage.dialect == HW_STAGE_NONE)
        return err_set(err, SS_ECONFIG, "hardware microscope: neither "
                       "[camera] driver nor [stage] driver is set");
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return err_set(err, -12, "out of memory");
    m->clock = devclock_real();
    m->pixel_um = c->cam.pixel_um;
    snprintf(m->objective, sizeof(m->objective), "%s", c->cam.objective);
    rc = open_stage(c, m, err);
    if (rc == 0)
        rc = open_camera(c, m, err);
    if (rc != 0) {
        microscope_free(m);
        return rc;
    }
    log_notice("hw", "microscope camera=\"%s\" stage=\"%s\" pixel_um=%g "
               "objective=%s", m->cam ? m->cam->model : "none",
               m->stage ? m->stage->model : "none", m->pixel_um,
               m->objective);
    *out = m;
    return 0;
}
