/* SPDX-License-Identifier: MIT */
/* The microscope as a set of devices, and the real-time device clock. */
#include "drivers/microscope.h"

#include <stdlib.h>
#include <time.h>

#include "common/util.h"

void
microscope_free(struct microscope *m)
{
    if (m == NULL)
        return;
    if (m->cam != NULL) {
        m->cam->ops->close(m->cam);
        camera_free(m->cam);
    }
    if (m->stage != NULL) {
        m->stage->ops->close(m->stage);
        stage_free(m->stage);
    }
    if (m->ov != NULL)
        m->ov->ops->destroy(m->ov);
    if (m->owner_free != NULL)
        m->owner_free(m->owner);
    free(m);
}

static double
real_now_ms(void *ctx)
{
    return util_now_ms();
}

static void
real_sleep_ms(void *ctx, double ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - ts.tv_sec * 1000.0) * 1e6);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

struct devclock
devclock_real(void)
{
    struct devclock c = { real_now_ms, real_sleep_ms, NULL };
    return c;
}
