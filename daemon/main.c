/* SPDX-License-Identifier: MIT */
/* slidescand: the scanner daemon (daemon/daemon.c has everything). */
#include "daemon/daemon.h"

int
main(int argc, char **argv)
{
    return daemon_main(argc, argv);
}
