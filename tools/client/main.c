/* SPDX-License-Identifier: MIT */
/* slidescan: dispatches to the subcommand named by argv[1]. */
#include <stdio.h>
#include <string.h>

#include "tools/client/client.h"

struct client_cmd {
    const char *name;
    const char *summary;
    int (*fn)(int argc, char **argv);
};

static const struct client_cmd commands[] = {
#define CMD(fn, name, summary) { name, summary, cmd_##fn },
#include "tools/client/commands.def"
#undef CMD
};

void
client_usage(void)
{
    size_t i;

    printf("usage: slidescan COMMAND [OPTIONS]\n\ncommands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    printf("\n'slidescan COMMAND --help' describes one command.\n");
}

int
main(int argc, char **argv)
{
    size_t i;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        client_usage();
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("slidescan %s\n", SLIDESCAN_VERSION);
        return EXIT_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "slidescan: unknown command '%s'; try 'slidescan "
            "--help'\n", argv[1]);
    return EXIT_USAGE;
}
