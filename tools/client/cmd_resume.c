/* SPDX-License-Identifier: MIT */
/* slidescan resume SCAN */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan resume SCAN\n"
    "Puts paused scan SCAN back in the queue; it continues at its next\n"
    "tile.  A scan waiting for disk space resumes by itself; resume makes\n"
    "it check the free space at once, and says what is missing if the\n"
    "disk is still short (exit 1).\n";

int
cmd_resume(int argc, char **argv)
{
    return client__scan_op(argc, argv, "resume", true, usage);
}
