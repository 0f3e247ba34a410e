/* SPDX-License-Identifier: MIT */
/*
 * The CNN engine: float32 tensors in NCHW order, a model built from a small
 * JSON architecture description plus weights in a safetensors file, forward
 * and backward passes, losses, optimisers, and the settings that govern
 * threads and determinism.  It runs on the CPU through OpenBLAS and needs
 * no Python.  worker/nn/README.md documents the JSON format, the layers and
 * their parameters, and how a PyTorch model is exported.
 *
 * A typical inference:
 *
 *     struct nn_model *m;
 *     nn_model_load(NULL, "models/tissue.safetensors", &m, &err);
 *     struct nn_tensor *x = nn_tensor_new4(1, 3, 512, 512);
 *     ... fill x->data ...
 *     nn_model_forward(m, x, NN_MODE_INFER, &err);
 *     const struct nn_tensor *y = nn_model_output(m, NULL);
 *
 * A training step (batch of 2, cross-entropy, Adam):
 *
 *     nn_model_forward(m, x, NN_MODE_TRAIN, &err);
 *     y = nn_model_output(m, NULL);
 *     g = nn_tensor_new_like(y);
 *     nn_loss_cross_entropy(y, labels, NULL, NN_IGNORE_NONE, &loss, g, &err);
 *     nn_model_zero_grad(m);
 *     nn_model_backward(m, NULL, g, &err);
 *     nn_optim_step(opt, &err);
 *
 * Grad-CAM: nn_model_keep(m, "enc4") before the forward pass in
 * NN_MODE_EXPLAIN, then nn_model_backward() from a gradient that selects
 * the class score of interest; nn_model_activation(m, "enc4") and
 * nn_model_activation_grad(m, "enc4") give A and dScore/dA.
 *
 * Threads: one model must be used by one thread at a time; the engine
 * parallelises inside each call (nn_set_threads()).  Different models may
 * be used from different threads, but they share the engine's thread
 * pool, so their parallel kernels take turns.  The engine sets OpenBLAS
 * to one thread for the whole process when the first model is created
 * (it splits the work itself; see pool.c).
 */
#ifndef SS_WORKER_NN_NN_H
#define SS_WORKER_NN_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The lab's training defaults (tumor and stroma models). */
#define NN_DEFAULT_EPOCHS 200
#define NN_DEFAULT_BATCH 2
#define NN_DEFAULT_LR 1e-4

#define NN_MAX_DIMS 4

/* Label value that no pixel carries: pass as ignore_label to ignore none. */
#define NN_IGNORE_NONE INT32_MIN

/* ------------------------------------------------------------------------
 * Tensors
 */

/*
 * A dense float32 tensor.  Activations are always 4-D, NCHW: shape[0] is
 * the batch, shape[1] the channels, shape[2] the height, shape[3] the
 * width.  Parameters keep PyTorch's shapes: a convolution weight is
 * [out, in, kh, kw], a transposed convolution weight [in, out, kh, kw], a
 * linear weight [out, in], a bias or batch-norm vector [C].  Unused
 * trailing entries of shape are 1.  data is 64-byte aligned and owned by
 * the tensor.
 */
struct nn_tensor {
    int ndim;                       /* 1..NN_MAX_DIMS */
    int shape[NN_MAX_DIMS];
    size_t count;                   /* product of shape[0..ndim-1] */
    float *data;
};

/* A zero-filled tensor of the given rank and shape; NULL when out of
 * memory or a dimension is < 1.  Free with nn_tensor_free(). */
struct nn_tensor *nn_tensor_new(int ndim, const int *shape);

/* A zero-filled 4-D NCHW tensor. */
struct nn_tensor *nn_tensor_new4(int n, int c, int h, int w);

/* A zero-filled tensor with the shape of t. */
struct nn_tensor *nn_tensor_new_like(const struct nn_tensor *t);

/* A copy of t (shape and data). */
struct nn_tensor *nn_tensor_dup(const struct nn_tensor *t);

/* nn_tensor_free(NULL) is a no-op. */
void nn_tensor_free(struct nn_tensor *t);

/* Sets every element to v. */
void nn_tensor_fill(struct nn_tensor *t, float v);

/* True when a and b have the same rank and shape. */
bool nn_tensor_same_shape(const struct nn_tensor *a,
                          const struct nn_tensor *b);

/* y += alpha * x, element by element; shapes must match (-EINVAL). */
int nn_tensor_axpy(struct nn_tensor *y, float alpha,
                   const struct nn_tensor *x);

/* Pointer to element (n, c, y, x) of a 4-D tensor. */
static inline float *
nn_tensor_at(const struct nn_tensor *t, int n, int c, int y, int x)
{
    return t->data + (((size_t)n * t->shape[1] + c) * t->shape[2] + y) *
           t->shape[3] + x;
}

/*
 * Fills image n of a 4-D tensor with 3 channels from 8-bit interleaved RGB
 * (stride_bytes per row, w = t->shape[3], h = t->shape[2]): channel c gets
 * (v / 255 - mean[c]) / std[c].  mean and std may be NULL (0 and 1).
 */
void nn_tensor_set_rgb8(struct nn_tensor *t, int n, const uint8_t *rgb,
                        size_t stride_bytes, const float *mean,
                        const float *std);

/*
 * Softmax over the channels of each pixel of a 4-D tensor, out = softmax(in)
 * (out may be in).  Returns -EINVAL when the shapes differ.
 */
int nn_softmax_channels(const struct nn_tensor *in, struct nn_tensor *out);

/* ------------------------------------------------------------------------
 * Engine settings and memory accounting
 */

/*
 * Number of threads used inside each call, 1..64; 0 means one per online
 * CPU (the default).  Process-wide.  Returns the number in force.
 */
int nn_set_threads(int n);

/*
 * Deterministic mode (default off).  Every reduction in the engine runs in
 * a fixed order and every output element is computed by one thread, so
 * results are always reproducible for a given thread count.  Weight
 * gradients are summed per group of tasks; by default there is one group
 * per thread, in deterministic mode always 8, which makes outputs,
 * gradients and weights bit-identical whatever the thread count (at some
 * cost in parallelism above 8 threads).  Process-wide.  Returns the
 * previous setting.
 */
bool nn_set_deterministic(bool on);

/*
 * Bytes currently held by the engine's tensors and scratch buffers, and
 * the peak since the last nn_mem_reset_peak().  Counts exactly what the
 * engine allocated for tensor data (all tensors, all models).
 */
void nn_mem_stats(size_t *current_bytes, size_t *peak_bytes);
void nn_mem_reset_peak(void);

/* ------------------------------------------------------------------------
 * Models
 */

struct nn_model;

enum nn_mode {
    /* Batch norm uses running statistics (folded into the convolution),
     * dropout is off, no gradients; each activation is freed as soon as no
     * later layer needs it, except outputs and kept layers. */
    NN_MODE_INFER,
    /* Batch norm uses batch statistics and updates the running ones,
     * dropout is on, everything backward needs is kept. */
    NN_MODE_TRAIN,
    /* Inference semantics (running statistics, no dropout) but everything
     * backward needs is kept: for explanations such as Grad-CAM.
     * Backward then computes activation gradients, not parameter ones. */
    NN_MODE_EXPLAIN,
};

/*
 * Builds a model from its architecture (JSON text, the format in
 * worker/nn/README.md).  Parameters are initialised as PyTorch initialises
 * fresh layers (Kaiming-uniform weights, uniform biases, batch norm at
 * weight 1, bias 0, running mean 0, running variance 1) from the given
 * seed.  On error returns a negative code and names the layer and cause.
 */
int nn_model_new(const char *arch_json, uint64_t seed, struct nn_model **out,
                 struct ss_err *err);

/*
 * Loads a model.  arch_path is the JSON architecture file; when NULL the
 * architecture is read from the "slidescan.arch" entry of the weights
 * file's __metadata__ (nn_model_save() always writes it there).  Every
 * parameter the architecture declares must be present in weights_path with
 * the right shape (F16/F32/F64/BF16 are accepted and converted); tensors the
 * architecture does not use are an error too (they reveal a mismatched
 * architecture), except BatchNorm's num_batches_tracked.
 */
int nn_model_load(const char *arch_path, const char *weights_path,
                  struct nn_model **out, struct ss_err *err);

/*
 * Writes the parameters (and batch-norm running statistics) as F32 into a
 * safetensors file, with the architecture in __metadata__["slidescan.arch"]
 * and the model's metadata in __metadata__["slidescan.meta"], durably
 * (temporary name, fsync, rename).  The seed and the count of training
 * passes go in too ("slidescan.seed", "slidescan.step"), so a resumed
 * training draws the dropout masks an uninterrupted one would.  When
 * arch_path is not NULL the architecture JSON is written there as well.
 */
int nn_model_save(const struct nn_model *m, const char *arch_path,
                  const char *weights_path, struct ss_err *err);

/* nn_model_free(NULL) is a no-op. */
void nn_model_free(struct nn_model *m);

/*
 * Returns the memory the last pass planned (its activation arena) and the
 * engine's per-thread im2col scratch; the next pass plans and allocates
 * again.  For a worker that keeps a model loaded between jobs.
 */
void nn_model_release_memory(struct nn_model *m);

/*
 * The architecture's free-form "meta" object (class names, resolution,
 * tile size, normalisation ...) as JSON text, "{}" when absent.  Borrowed,
 * valid until nn_model_set_meta() or nn_model_free().
 */
const char *nn_model_meta(const struct nn_model *m);

/* Replaces the "meta" object; meta_json must be a JSON object. */
int nn_model_set_meta(struct nn_model *m, const char *meta_json,
                      struct ss_err *err);

/* Channels of the model's (first) input; the architecture's "inputs". */
int nn_model_input_channels(const struct nn_model *m);

/* Name of output i (0 is the default output), NULL past the last. */
const char *nn_model_output_name(const struct nn_model *m, int i);

/*
 * Keeps the activation of the named layer (or input) after forward passes
 * in every mode, and its gradient after backward passes.  Returns -ENOENT
 * (with a message) when there is no such layer.
 */
int nn_model_keep(struct nn_model *m, const char *name, struct ss_err *err);

/*
 * Runs the model on x (N x C x H x W, C = nn_model_input_channels()).  x is
 * borrowed for the call only (training keeps a copy when backward needs
 * it).  H and W must suit the architecture: each pooling and strided
 * layer's output size is checked, and concatenated or added inputs must
 * agree in size; otherwise -EINVAL names the layer and the sizes.
 * Each call of NN_MODE_TRAIN draws new dropout masks from the model's seed
 * and a step counter, so training is reproducible.
 */
int nn_model_forward(struct nn_model *m, const struct nn_tensor *x,
                     enum nn_mode mode, struct ss_err *err);

/*
 * Output of the last forward pass by name (NULL: the default output).
 * Borrowed, valid until the next forward pass or nn_model_free(); NULL
 * when there is no such output.
 */
const struct nn_tensor *nn_model_output(const struct nn_model *m,
                                        const char *name);

/*
 * Activation of any layer (or input) after the last forward pass: outputs
 * and kept layers always; after a NN_MODE_TRAIN or NN_MODE_EXPLAIN pass
 * every layer except a batch norm whose only consumer is a ReLU (the two
 * run as one step; keep the batch norm to see its output); NULL otherwise.
 * Borrowed like nn_model_output().
 */
const struct nn_tensor *nn_model_activation(const struct nn_model *m,
                                            const char *name);

/*
 * Backward pass after a NN_MODE_TRAIN or NN_MODE_EXPLAIN forward pass:
 * grad is dLoss/d(output), with the output's shape; output NULL means the
 * default output.  In NN_MODE_TRAIN parameter gradients are added to the
 * ones already accumulated (call nn_model_zero_grad() first, as in
 * PyTorch); in NN_MODE_EXPLAIN only activation gradients are computed.
 * -EINVAL when no backward-capable forward pass preceded or the shape is
 * wrong.  One backward per forward pass.
 */
int nn_model_backward(struct nn_model *m, const char *output,
                      const struct nn_tensor *grad, struct ss_err *err);

/* Gradient of the loss w.r.t. a kept layer's activation after the last
 * backward pass; NULL otherwise.  Borrowed like nn_model_output(). */
const struct nn_tensor *nn_model_activation_grad(const struct nn_model *m,
                                                 const char *name);

/* Sets every parameter gradient to zero. */
void nn_model_zero_grad(struct nn_model *m);

/*
 * Parameters, in architecture order: for each layer its weight, then bias,
 * then (batch norm) running_mean and running_var.  Names are
 * "<layer>.weight", "<layer>.bias", "<layer>.running_mean",
 * "<layer>.running_var", as in a PyTorch state_dict.  grad is NULL for
 * buffers (running statistics) and in frozen layers.  Gradients are
 * created on first need (a model used only for inference holds none).
 * Changing a value through the returned pointer is allowed and takes
 * effect at the next pass.
 */
int nn_model_param_count(const struct nn_model *m);
int nn_model_param(const struct nn_model *m, int i, const char **name,
                   struct nn_tensor **value, struct nn_tensor **grad);

/* The parameter of that name, or NULL. */
struct nn_tensor *nn_model_find_param(const struct nn_model *m,
                                      const char *name);

/* Says parameters were changed by hand.  Batch norm is folded into the
 * convolution afresh at every inference pass and nothing else is derived
 * from the parameters, so this has nothing to do; it stays for callers. */
void nn_model_params_changed(struct nn_model *m);

/* Number of trainable scalars (what PyTorch's numel() sums). */
size_t nn_model_trainable_count(const struct nn_model *m);

/*
 * Multiply-adds per image of one inference pass at H x W (convolutions,
 * transposed convolutions, linear layers); for GFLOP/s figures
 * (1 multiply-add = 2 FLOP).
 */
double nn_model_macs(const struct nn_model *m, int h, int w);

/*
 * The architecture JSON of a standard U-Net, malloc()ed (free() it):
 * `levels` resolutions (levels - 1 max-pooling steps), base_channels at
 * the top doubling per level; per level two 3x3 convolutions (no bias)
 * each followed by batch norm and ReLU, named enc<l>.conv1, enc<l>.bn1,
 * enc<l>.relu1, enc<l>.conv2 ...; pool<l>; going up a 2x2 stride-2
 * transposed convolution up<l>, concatenation cat<l> with enc<l>.relu2 and
 * the same block dec<l>; a 1x1 convolution "head" with one output per
 * class.  The receptive field of levels = 4 is 96 px.  tools/nn/nnjson.py
 * unet() writes the same text for PyTorch.  NULL when out of memory or
 * the numbers are out of range (levels 1..8, channels 1..4096).
 */
char *nn_unet_arch(int levels, int base_channels, int in_channels,
                   int classes);

/* ------------------------------------------------------------------------
 * Losses.  Each returns the mean loss in *loss and, when grad is not NULL
 * (same shape as logits), writes dLoss/dlogits into it (overwriting).
 * logits are N x K x H x W (K classes; a classifier has H = W = 1); labels
 * are N*H*W class indices in NCHW pixel order (index (n * H + y) * W + x).
 */

/*
 * Cross-entropy with softmax over channels, like PyTorch's
 * CrossEntropyLoss(weight=class_weight, ignore_index=ignore_label,
 * reduction='mean'): sum of w[y] * -log p(y) over pixels not ignored,
 * divided by the sum of their w[y].  class_weight has K entries, NULL for
 * all 1.  A label outside 0..K-1 that is not ignore_label is -EINVAL.  When
 * every pixel is ignored the loss and gradient are 0.
 */
int nn_loss_cross_entropy(const struct nn_tensor *logits,
                          const int32_t *labels, const float *class_weight,
                          int32_t ignore_label, double *loss,
                          struct nn_tensor *grad, struct ss_err *err);

/*
 * Soft Dice loss on softmax probabilities, over the whole batch per class:
 * 1 - (2 sum p*g + smooth) / (sum p + sum g + smooth), averaged over the
 * classes with weight class_weight[k] (NULL: all 1; weight 0 leaves a class
 * out, e.g. background).  Pixels labelled ignore_label count for no class.
 * smooth is usually 1.
 */
int nn_loss_dice(const struct nn_tensor *logits, const int32_t *labels,
                 const float *class_weight, int32_t ignore_label,
                 double smooth, double *loss, struct nn_tensor *grad,
                 struct ss_err *err);

/* ------------------------------------------------------------------------
 * Optimisers.  Each matches the PyTorch class of the same name exactly
 * (torch 1.13 semantics, single-tensor code path); see README.md.
 */

enum nn_optim_kind {
    NN_OPTIM_SGD,   /* torch.optim.SGD: momentum, dampening, nesterov,
                       weight_decay as L2 added to the gradient */
    NN_OPTIM_ADAM,  /* torch.optim.Adam: weight_decay as L2 added to the
                       gradient before the moments (coupled) */
    NN_OPTIM_ADAMW, /* torch.optim.AdamW: decoupled weight decay,
                       p -= lr * weight_decay * p before the Adam update */
};

struct nn_optim_cfg {
    enum nn_optim_kind kind;
    double lr;                      /* learning rate */
    double momentum;                /* SGD */
    double dampening;               /* SGD */
    bool nesterov;                  /* SGD */
    double beta1, beta2, eps;       /* Adam, AdamW */
    bool amsgrad;                   /* Adam, AdamW */
    double weight_decay;
};

/* PyTorch's defaults for that kind, with the lab's lr (NN_DEFAULT_LR):
 * SGD momentum 0.9; Adam(W) betas 0.9/0.999, eps 1e-8; weight decay 0 for
 * SGD and Adam, 0.01 for AdamW (PyTorch's AdamW default). */
void nn_optim_cfg_default(struct nn_optim_cfg *cfg, enum nn_optim_kind kind);

struct nn_optim;

/* An optimiser over every trainable parameter of m (m must outlive it). */
int nn_optim_new(struct nn_model *m, const struct nn_optim_cfg *cfg,
                 struct nn_optim **out, struct ss_err *err);

/* nn_optim_free(NULL) is a no-op. */
void nn_optim_free(struct nn_optim *o);

/* One update from the accumulated gradients (does not zero them). */
int nn_optim_step(struct nn_optim *o, struct ss_err *err);

/* Changes the learning rate (schedules); returns the previous one. */
double nn_optim_set_lr(struct nn_optim *o, double lr);

/* Steps taken so far. */
long nn_optim_steps(const struct nn_optim *o);

/*
 * Optimiser state (moments, step count) to and from a safetensors file,
 * for checkpoints and resume.  Loading checks that the state belongs to a
 * model with the same parameter names and shapes.
 */
int nn_optim_save(const struct nn_optim *o, const char *path,
                  struct ss_err *err);
int nn_optim_load(struct nn_optim *o, const char *path, struct ss_err *err);

#endif
