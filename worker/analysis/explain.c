/* SPDX-License-Identifier: MIT */
/*
 * Explanations of a region's prediction.
 */
#include "worker/analysis/output.h"

#include <errno.h>

int
an__explain(const struct an_job *j, struct an_slide *s, struct an_model *m,
            const struct an_seg *sg, json_t *files, struct ss_err *err)
{
    return err_set(err, -ENOTSUP, "explain: model %s has no gradients to "
                   "explain (only CNN models do)", m->name);
}
