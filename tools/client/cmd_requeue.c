/* SPDX-License-Identifier: MIT */
/* slidescan requeue SCAN */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan requeue SCAN\n"
    "Puts a failed, cancelled or paused scan back at the end of the queue;\n"
    "it continues at its next tile.  A scan waiting for disk space stays on\n"
    "the microscope and resumes by itself (use resume to check again).\n";

int
cmd_requeue(int argc, char **argv)
{
    return client__scan_op(argc, argv, "requeue", true, usage);
}
