/* SPDX-License-Identifier: MIT */
/*
 * CNN models inside the analysis (cnn.c): what training, Grad-CAM and the
 * segmenter share about a model on the worker/nn engine.
 */
#ifndef SS_WORKER_ANALYSIS_CNN_H
#define SS_WORKER_ANALYSIS_CNN_H

#include <pthread.h>
#include <stdbool.h>

#include "worker/analysis/internal.h"
#include "worker/nn/nn.h"

struct an_cnn {
    struct nn_model *nn;            /* owned */
    pthread_mutex_t lock;           /* one forward pass at a time */
    int align;
    float mean[3], std[3];
    char gradcam_layer[64];
    bool borrowed;                  /* nn belongs to someone else */
};

/* Wraps an engine model (taking ownership) as an analysis model, reading
 * its meta object; path only names it in errors. */
int an_cnn_wrap(struct nn_model *nn, const char *path, struct an_model **out,
                struct ss_err *err);

/* The CNN behind an analysis model, NULL for other kinds. */
struct an_cnn *an_cnn_of(struct an_model *m);

/* Forward pass of one RGB image; *out is the engine's output tensor
 * (1 × AN_NCLASS × h × w), borrowed until the next pass.  The caller
 * holds c->lock when other threads may use the model. */
int an_cnn_logits(struct an_cnn *c, const struct img *in,
                  struct nn_tensor **out, enum nn_mode mode,
                  struct ss_err *err);

#endif
