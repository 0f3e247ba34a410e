/* SPDX-License-Identifier: MIT */
/* Drawing training examples (traindata.c), internal to worker/analysis. */
#ifndef SS_WORKER_ANALYSIS_TRAINDATA_H
#define SS_WORKER_ANALYSIS_TRAINDATA_H

#include "common/rng.h"
#include "worker/analysis/train.h"

/* One C × C example from s into rgb (C·C·3) and lab (C·C, 255 =
 * unlabelled), augmented when asked. */
int an__train_draw(const struct an_train_source *s, int C, struct rng *r,
                   bool augment, uint8_t *rgb, int32_t *lab);

#endif
