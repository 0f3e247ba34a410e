/* SPDX-License-Identifier: MIT */
/*
 * CNN segmentation models on the worker/nn engine.
 */
#include "worker/analysis/internal.h"

#include <errno.h>

int
an__model_cnn_load(const char *path, struct an_model **out,
                   struct ss_err *err)
{
    return err_set(err, -ENOTSUP, "model %s: CNN models need the worker/nn "
                   "engine, which this build does not have yet", path);
}
