/* SPDX-License-Identifier: MIT */
/*
 * The standard U-Net architecture as JSON text, so that C callers (the
 * trainer, the benchmark, tests) need not spell out its layers.  The
 * layer names match tools/nn/nnjson.py unet(), so a model trained in
 * PyTorch from that description loads here unchanged.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn.h"

struct buf {
    char *s;
    size_t len;
    bool oom;
};

static void __attribute__((format(printf, 2, 3)))
put(struct buf *b, const char *fmt, ...)
{
    char tmp[512], *s;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (b->oom || n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = true;
        return;
    }
    s = realloc(b->s, b->len + (size_t)n + 1);
    if (!s) {
        b->oom = true;
        return;
    }
    memcpy(s + b->len, tmp, (size_t)n + 1);
    b->s = s;
    b->len += (size_t)n;
}

/* Two 3x3 conv (no bias) + batch norm + ReLU, <name>.conv1 .. relu2. */
static void
block(struct buf *b, const char *name, const char *in, int c)
{
    int i;

    for (i = 1; i <= 2; i++) {
        put(b, "{\"name\": \"%s.conv%d\", \"type\": \"conv2d\", "
            "\"out_channels\": %d, \"kernel\": 3, \"padding\": 1, "
            "\"bias\": false", name, i, c);
        if (i == 1)
            put(b, ", \"input\": \"%s\"", in);
        put(b, "},\n{\"name\": \"%s.bn%d\", \"type\": \"batchnorm2d\"},\n"
            "{\"name\": \"%s.relu%d\", \"type\": \"relu\"},\n", name, i,
            name, i);
    }
}

char *
nn_unet_arch(int levels, int base_channels, int in_channels, int classes)
{
    struct buf b = { NULL, 0, false };
    char prev[64], name[32];
    int lv;

    if (levels < 1 || levels > 8 || base_channels < 1 ||
        (long)base_channels << (levels - 1) > 4096 || in_channels < 1 ||
        in_channels > 4096 || classes < 1 || classes > 4096)
        return NULL;
    put(&b, "{\"format\": \"slidescan-nn\", \"version\": 1, \"name\": "
        "\"unet%d-%d\",\n\"inputs\": [{\"name\": \"image\", \"channels\": "
        "%d}],\n\"outputs\": [\"head\"],\n\"layers\": [\n", levels,
        base_channels, in_channels);
    snprintf(prev, sizeof(prev), "image");
    for (lv = 1; lv <= levels; lv++) {
        if (lv > 1) {
            put(&b, "{\"name\": \"pool%d\", \"type\": \"maxpool2d\", "
                "\"kernel\": 2, \"input\": \"%s\"},\n", lv - 1, prev);
            snprintf(prev, sizeof(prev), "pool%d", lv - 1);
        }
        snprintf(name, sizeof(name), "enc%d", lv);
        block(&b, name, prev, base_channels << (lv - 1));
        snprintf(prev, sizeof(prev), "enc%d.relu2", lv);
    }
    for (lv = levels - 1; lv >= 1; lv--) {
        put(&b, "{\"name\": \"up%d\", \"type\": \"conv_transpose2d\", "
            "\"out_channels\": %d, \"kernel\": 2, \"stride\": 2, "
            "\"input\": \"%s\"},\n", lv, base_channels << (lv - 1), prev);
        put(&b, "{\"name\": \"cat%d\", \"type\": \"concat\", \"inputs\": "
            "[\"up%d\", \"enc%d.relu2\"]},\n", lv, lv, lv);
        snprintf(name, sizeof(name), "dec%d", lv);
        snprintf(prev, sizeof(prev), "cat%d", lv);
        block(&b, name, prev, base_channels << (lv - 1));
        snprintf(prev, sizeof(prev), "dec%d.relu2", lv);
    }
    put(&b, "{\"name\": \"head\", \"type\": \"conv2d\", \"out_channels\": "
        "%d, \"kernel\": 1, \"input\": \"%s\"}\n]}\n", classes, prev);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
