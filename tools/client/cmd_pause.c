/* SPDX-License-Identifier: MIT */
/* slidescan pause [SCAN] */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan pause [SCAN]\n"
    "Pauses scan SCAN (or the one on the microscope) after its current tile;\n"
    "a queued scan is held back.  Once answered, the pause holds even if\n"
    "slidescand stops before the tile ends.  'slidescan resume' brings it\n"
    "back.\n";

int
cmd_pause(int argc, char **argv)
{
    return client__scan_op(argc, argv, "pause", false, usage);
}
