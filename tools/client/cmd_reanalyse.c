/* SPDX-License-Identifier: MIT */
/* slidescan reanalyse SCAN: run the worker on a finished scan again. */
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan reanalyse SCAN\n"
    "Queues the analysis of done scan SCAN again (for example after a new\n"
    "model was configured); `slidescan show` reports the new numbers.\n";

int
cmd_reanalyse(int argc, char **argv)
{
    return client__scan_op(argc, argv, "analyse", true, usage);
}
