/* SPDX-License-Identifier: MIT */
/*
 * libgphoto2 results in an operator's words and as project codes.  The
 * causes a scanner meets at night: the camera is busy (retry), another
 * program holds it (a desktop photo importer or file manager grabbed the
 * USB interface; wait for it to let go), it is gone (cable, power), it did
 * not answer in time.
 */
#include <gphoto2/gphoto2-port-result.h>
#include <gphoto2/gphoto2-result.h>

#include "drivers/hw/hw_internal.h"

struct gp_cause {
    int gp_rc;
    int code;
    const char *text;
};

static const struct gp_cause causes[] = {
    { GP_ERROR_CAMERA_BUSY, SS_EBUSY, "camera busy" },
    { GP_ERROR_IO_USB_CLAIM, SS_EHELD, "the camera's USB interface is "
      "claimed by another program (a desktop photo importer or file "
      "manager such as gvfs-gphoto2-volume-monitor); quit it and the "
      "scanner will retry" },
    { GP_ERROR_IO_LOCK, SS_EHELD, "the camera's port is locked by another "
      "program" },
    { GP_ERROR_TIMEOUT, SS_ETIMEOUT, "the camera did not answer in time" },
    { GP_ERROR_IO_USB_FIND, SS_EGONE, "camera not found on its port "
      "(unplugged or switched off?)" },
    { GP_ERROR_MODEL_NOT_FOUND, SS_EGONE, "no camera of that model found" },
    { GP_ERROR_IO, SS_EGONE, "lost contact with the camera (I/O error)" },
    { GP_ERROR_IO_READ, SS_EGONE, "lost contact with the camera (read "
      "failed)" },
    { GP_ERROR_IO_WRITE, SS_EGONE, "lost contact with the camera (write "
      "failed)" },
    { GP_ERROR_IO_INIT, SS_EGONE, "cannot open the camera's port" },
    { GP_ERROR_UNKNOWN_PORT, SS_ECONFIG, "unknown camera port" },
    { GP_ERROR_NOT_SUPPORTED, -95, "not supported by this camera" },
    { GP_ERROR_NO_SPACE, SS_EDEVICE, "the camera's storage is full" },
    { GP_ERROR_CAMERA_ERROR, SS_EDEVICE, "the camera reported an error" },
    { GP_ERROR_CORRUPTED_DATA, SS_EDEVICE, "corrupted data from the "
      "camera" },
    { GP_ERROR_NO_MEMORY, -12, "out of memory" },
};

int
hw__gp_error(struct ss_err *err, int gp_rc, const char *what,
             const char *detail)
{
    size_t i;
    int code = SS_EDEVICE;
    const char *text = gp_result_as_string(gp_rc);

    for (i = 0; i < sizeof(causes) / sizeof(causes[0]); i++)
        if (causes[i].gp_rc == gp_rc) {
            code = causes[i].code;
            text = causes[i].text;
            break;
        }
    if (detail != NULL && detail[0] != '\0')
        return err_set(err, code, "%s: %s (libgphoto2 %d: %s)", what, text,
                       gp_rc, detail);
    return err_set(err, code, "%s: %s (libgphoto2 %d)", what, text, gp_rc);
}
