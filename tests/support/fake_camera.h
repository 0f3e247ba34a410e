/* SPDX-License-Identifier: MIT */
/*
 * Runs tests/support/fake_ptpip_camera.py as a child process on an
 * ephemeral 127.0.0.1 port and steers it through its control file.
 */
#ifndef SS_TESTS_FAKE_CAMERA_H
#define SS_TESTS_FAKE_CAMERA_H

#include <sys/types.h>

struct fake_camera {
    pid_t pid;
    int port;
    char port_str[64];              /* "ptpip:127.0.0.1:P:P" */
    char dir[512];                  /* its files live here */
    char control[600], log[600];
};

/* Starts the fake camera serving image (a JPEG); vendor "generic" or
 * "sony".  0, or -1 with a reason printed when python3 or the script is
 * missing. */
int fc_start(struct fake_camera *fc, const char *dir, const char *image,
             const char *vendor);

/* Replaces the control file with json (written atomically). */
void fc_control(struct fake_camera *fc, const char *json);

/* How many lines of the fake's operation log start with prefix. */
int fc_count(struct fake_camera *fc, const char *prefix);

/* Under AddressSanitizer, re-runs the program once with LSAN_OPTIONS
 * naming tests/support/lsan_hw.supp (what libgphoto2 keeps for good);
 * a no-op in other builds. */
void fc_reexec_for_lsan(char **argv);

/* Stops the child by its pid and waits for it. */
void fc_stop(struct fake_camera *fc);

#endif
