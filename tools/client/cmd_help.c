/* SPDX-License-Identifier: MIT */
/* slidescan help [COMMAND] */
#include <stdio.h>

#include "tools/client/client.h"

int
cmd_help(int argc, char **argv)
{
    char *sub[] = { NULL, "--help", NULL };

    if (argc < 2) {
        client_usage();
        return EXIT_OK;
    }
    sub[0] = argv[1];
#define CMD(fn, name, summary) \
    if (__builtin_strcmp(argv[1], name) == 0 && cmd_##fn != cmd_help) \
        return cmd_##fn(2, sub);
#include "tools/client/commands.def"
#undef CMD
    fprintf(stderr, "slidescan help: unknown command '%s'\n", argv[1]);
    return EXIT_USAGE;
}
