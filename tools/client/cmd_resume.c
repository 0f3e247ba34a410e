/* SPDX-License-Identifier: MIT */
/* slidescan resume SCAN */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan resume SCAN\n"
    "Puts paused scan SCAN back in the queue; it continues at its next\n"
    "tile.\n";

int
cmd_resume(int argc, char **argv)
{
    return client__scan_op(argc, argv, "resume", true, usage);
}
