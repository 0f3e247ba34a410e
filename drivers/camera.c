/* SPDX-License-Identifier: MIT */
/*
 * The split capture for every camera: a driver's own capture_begin and
 * capture_end when it has them, else a whole capture in begin whose
 * frame end hands over.
 */
#include "drivers/camera.h"

#include <errno.h>

int
camera_capture_begin(struct camera *cam, struct ss_err *err)
{
    img_free(cam->held);
    cam->held = NULL;
    if (camera_overlaps_readout(cam))
        return cam->ops->capture_begin(cam, err);
    return cam->ops->capture(cam, &cam->held, err);
}

int
camera_capture_end(struct camera *cam, struct img **frame,
                   struct ss_err *err)
{
    *frame = NULL;
    if (camera_overlaps_readout(cam))
        return cam->ops->capture_end(cam, frame, err);
    if (cam->held == NULL)
        return err_set(err, -EINVAL, "camera %s: no capture begun",
                       cam->model);
    *frame = cam->held;
    cam->held = NULL;
    return 0;
}
