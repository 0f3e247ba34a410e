/* SPDX-License-Identifier: MIT */
/* Placeholder entry point, replaced as the program is built. */
#include <stdio.h>

int
main(void)
{
    fputs("not built yet\n", stderr);
    return 1;
}
