/* SPDX-License-Identifier: MIT */
/* slidescan cancel SCAN */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan cancel SCAN\n"
    "Cancels scan SCAN: a running scan stops after its current tile.  Its\n"
    "captured tiles stay; 'slidescan requeue' can continue it.\n";

int
cmd_cancel(int argc, char **argv)
{
    return client__scan_op(argc, argv, "cancel", true, usage);
}
