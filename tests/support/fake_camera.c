/* SPDX-License-Identifier: MIT */
/* Starting, steering and stopping the fake PTP/IP camera (fake_camera.h). */
#include "tests/support/fake_camera.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/testutil.h"

static void
nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

void
fc_control(struct fake_camera *fc, const char *json)
{
    char tmp[700];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", fc->control);
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fputs(json, f);
    fclose(f);
    rename(tmp, fc->control);
}

static int
wait_port(struct fake_camera *fc, const char *port_file)
{
    int i;

    for (i = 0; i < 200; i++) {
        FILE *f = fopen(port_file, "r");

        if (f != NULL) {
            int ok = fscanf(f, "%d", &fc->port) == 1;

            fclose(f);
            if (ok)
                return 0;
        }
        if (waitpid(fc->pid, NULL, WNOHANG) == fc->pid) {
            fc->pid = 0;
            return -1;
        }
        nap_ms(25);
    }
    return -1;
}

int
fc_start(struct fake_camera *fc, const char *dir, const char *image,
         const char *vendor)
{
    char script[1024], port_file[600];

    memset(fc, 0, sizeof(*fc));
    snprintf(script, sizeof(script), "%s/tests/support/fake_ptpip_camera.py",
             tu_root());
    if (access("/usr/bin/python3", X_OK) != 0 || access(script, R_OK) != 0) {
        print_message("# fake camera: /usr/bin/python3 or %s missing\n",
                      script);
        return -1;
    }
    snprintf(fc->dir, sizeof(fc->dir), "%s", dir);
    mkdir(dir, 0750);
    snprintf(fc->control, sizeof(fc->control), "%s/control.json", dir);
    snprintf(fc->log, sizeof(fc->log), "%s/ops.log", dir);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    unlink(port_file);
    fc_control(fc, "{}");
    fc->pid = fork();
    if (fc->pid == 0) {
        execl("/usr/bin/python3", "python3", script, "--port-file",
              port_file, "--control", fc->control, "--log", fc->log,
              "--image", image, "--vendor", vendor, (char *)NULL);
        _exit(127);
    }
    if (fc->pid < 0 || wait_port(fc, port_file) != 0) {
        print_message("# fake camera did not start\n");
        fc_stop(fc);
        return -1;
    }
    snprintf(fc->port_str, sizeof(fc->port_str), "ptpip:127.0.0.1:%d:%d",
             fc->port, fc->port);
    return 0;
}

int
fc_count(struct fake_camera *fc, const char *prefix)
{
    char line[512];
    int n = 0;
    FILE *f = fopen(fc->log, "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (!strncmp(line, prefix, strlen(prefix)))
            n++;
    fclose(f);
    return n;
}

void
fc_stop(struct fake_camera *fc)
{
    if (fc->pid > 0) {
        kill(fc->pid, SIGTERM);
        waitpid(fc->pid, NULL, 0);
    }
    fc->pid = 0;
}

void
fc_reexec_for_lsan(char **argv)
{
#ifdef __SANITIZE_ADDRESS__
    char opts[1200];
    const char *old = getenv("LSAN_OPTIONS");

    if (getenv("SS_LSAN_SUPP") != NULL)
        return;
    setenv("SS_LSAN_SUPP", "1", 1);
    snprintf(opts, sizeof(opts), "%s%ssuppressions=%s/tests/support/"
             "lsan_hw.supp:print_suppressions=0", old ? old : "",
             old ? ":" : "", tu_root());
    setenv("LSAN_OPTIONS", opts, 1);
    snprintf(opts, sizeof(opts), "%s%sfast_unwind_on_malloc=0",
             getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "",
             getenv("ASAN_OPTIONS") ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}
