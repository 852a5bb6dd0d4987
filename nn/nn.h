/* SPDX-License-Identifier: MIT
 * nn/nn.h: modules (layers), losses, optimizers, initialisation and LR schedules.
 *
 * A module is an nd_module header plus the kind's own fields, with a forward that composes
 * autograd ops (there is no hand-written layer backward). Modules own their parameters
 * (persistent tensors) and buffers, and list them by name in PyTorch's state_dict order and
 * naming ("0.weight", "2.bias"), so optimizers take one flat list and checkpoints interoperate.
 *
 * A user's own module (an ODE block, say) plugs in the same way as the built-ins:
 *
 *   typedef struct { nd_module base; nd_module *func; } ode_block;      // base first
 *   static nd_tensor *ode_block_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x) { ... }
 *
 *   ode_block *b = (ode_block *)nd_module_create(ctx, "ODEBlock", ode_block_forward, sizeof *b);
 *   b->func = nd_mlp_create(ctx, 3, (int[]){2, 50, 2}, ND_ACT_TANH, &rng);
 *   nd_module_add_child(ctx, &b->base, "func", b->func);     // now owned by b: "func.0.weight"
 *   nd_sequential_append(ctx, model, &b->base);               // composes with anything
 *
 * Forward passes return arena-owned tensors, or NULL with the first error in the ctx (the message
 * names the layer and the shapes); create functions return caller-owned objects (free with the
 * matching destroy) or NULL with the error in the ctx.
 */
#ifndef ND_NN_H
#define ND_NN_H

#include "autograd/autograd.h"
#include "tensor/param.h" /* nd_param: a named tensor, shared with io/ */
#include "tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Lists of named tensors (parameters, buffers, optimizer state). The list owns the names and the
 * items array, not the tensors.
 */
typedef struct {
    int n, cap;
    nd_param *items; /* (n,) */
} nd_param_list;

/* Frees the names and the items array (not the tensors); the list becomes empty. NULL is a no-op.
 */
ND_API void nd_param_list_destroy(nd_param_list *list);
/* The tensor named name, or NULL. */
ND_API nd_tensor *nd_param_list_find(const nd_param_list *list, const char *name);
/* Total number of elements over the list. */
ND_API size_t nd_param_list_numel(const nd_param_list *list);

/* ---------------------------------------------------------------------------------------------
 * Modules.
 */
typedef struct nd_module nd_module;
typedef nd_tensor *(*nd_forward_fn)(nd_ctx *ctx, nd_module *self, nd_tensor *x);

typedef struct {
    char *name; /* "0", "func", ... (owned) */
    nd_module *module;
} nd_module_child;

struct nd_module {
    const char *kind;      /* "Linear", "Sequential", or the user's; a static string */
    nd_forward_fn forward; /* x -> y; NULL input gives NULL output (checked by the caller) */
    /* Optional: frees what the kind allocated beyond the registered params, buffers and children
     * (called by nd_module_destroy before the module's own memory is freed). */
    void (*on_destroy)(nd_module *self);
    bool training; /* true after create; nd_module_train / nd_module_eval set it recursively */
    /* Registered through nd_module_add_*; owned by the module and destroyed with it. */
    int n_params, n_buffers, n_children;
    nd_param *params;          /* (n_params,) trainable, requires grad: "weight", "bias" */
    nd_param *buffers;         /* (n_buffers,) state saved but not trained: "running_mean" */
    nd_module_child *children; /* (n_children,) in forward order */
    nd_tensor *flat;           /* the parameter block of nd_module_flatten (owned), or NULL */
};

/* A zeroed module of size bytes (>= sizeof(nd_module); the kind's struct starts with an
 * nd_module) with kind and forward set, training on. Free with nd_module_destroy. */
ND_API nd_module *nd_module_create(nd_ctx *ctx, const char *kind, nd_forward_fn forward,
                                   size_t size);
/* Destroys children, params and buffers, calls on_destroy, frees the module. NULL is a no-op. */
ND_API void nd_module_destroy(nd_module *m);

/* Registers a persistent tensor under a local name; the module takes ownership of it (also on
 * failure, when it is destroyed). Names must be unique within the module and contain no '.'. */
ND_API nd_status nd_module_add_param(nd_ctx *ctx, nd_module *m, const char *name, nd_tensor *t);
ND_API nd_status nd_module_add_buffer(nd_ctx *ctx, nd_module *m, const char *name, nd_tensor *t);
/* Creates a zeroed persistent parameter (requires grad) and registers it; NULL on failure. */
ND_API nd_tensor *nd_module_new_param(nd_ctx *ctx, nd_module *m, const char *name, int ndim,
                                      const int *shape);
/* Adds child as a submodule (owned from now on, destroyed on failure too); its state is listed
 * under "name.". Sequential names its children "0", "1", ... */
ND_API nd_status nd_module_add_child(nd_ctx *ctx, nd_module *m, const char *name, nd_module *child);

/* y = m(x): checks m and x and calls m->forward. Arena-owned result or NULL + ctx error. */
ND_API nd_tensor *nd_module_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x);
ND_API void nd_module_train(nd_module *m, bool training); /* recursive */
ND_API void nd_module_eval(nd_module *m);                 /* nd_module_train(m, false) */

/* Appends m's trainable parameters, recursively, with dotted names ("0.weight"), to list (which
 * may be empty: {0}). nd_module_state lists params and buffers in PyTorch's state_dict order
 * (each module's params, then its buffers, then its children): what a checkpoint saves. */
ND_API nd_status nd_module_params(nd_ctx *ctx, nd_module *m, nd_param_list *list);
ND_API nd_status nd_module_state(nd_ctx *ctx, nd_module *m, nd_param_list *list);
/* Zeroes the grad of every parameter of m. */
ND_API void nd_module_zero_grad(nd_module *m);

/* Moves every parameter of m (nd_module_params' order) into one block: returns a persistent
 * tensor flat (numel,) owned by m, whose data holds all the parameters' values one after the other
 * and whose grad holds all their gradients in the same layout. Each parameter stays the same
 * nd_tensor (names, shapes, values and gradients unchanged; t->base is flat) but its data and grad
 * are now slices of flat's, so a gradient all-reduce is one call over flat->grad and an
 * optimizer over these parameters updates them in one pass. Checkpoints, optimizers and odeint
 * see the parameters as before. Call it once the model is built, before creating its optimizer:
 * calling it again returns the same block; a parameter added after it, a parameter shared twice
 * or one already in another module's block is ND_ERR_ARG, and nothing is changed. Parameters
 * that do not require grad keep grad NULL (their slice of flat->grad stays zero). Buffers are not
 * moved. NULL with the error in ctx (m untouched) on failure. */
ND_API nd_tensor *nd_module_flatten(nd_ctx *ctx, nd_module *m);

/* ---------------------------------------------------------------------------------------------
 * Initialisation (PyTorch's torch.nn.init formulas), seeded by the caller's generator.
 */
/* fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field (2-D or more). */
ND_API void nd_init_fans(const nd_tensor *t, int *fan_in, int *fan_out);
ND_API void nd_init_uniform(nd_tensor *t, nd_rng *rng, double lo, double hi);
ND_API void nd_init_normal(nd_tensor *t, nd_rng *rng, double mean, double std);
/* U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) (leaky-relu gain). */
ND_API void nd_init_kaiming_uniform(nd_tensor *t, nd_rng *rng, double a);
/* N(0, s^2), s = gain / sqrt(fan_in). */
ND_API void nd_init_kaiming_normal(nd_tensor *t, nd_rng *rng, double a);
/* U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)). */
ND_API void nd_init_xavier_uniform(nd_tensor *t, nd_rng *rng, double gain);
/* N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out)). */
ND_API void nd_init_xavier_normal(nd_tensor *t, nd_rng *rng, double gain);

/* ---------------------------------------------------------------------------------------------
 * Layers as functions (what the modules call; usable directly with your own tensors).
 */
/* nd_linear(ctx, x, w, b) (x @ w^T + b) is an autograd op: see autograd/autograd.h. */
/* nd_conv2d(ctx, x, w, b, stride, pad) is an autograd op: see autograd/autograd.h. */
/* Mean over k x k windows of x (N, C, H, W) -> (N, C, OH, OW); no padding. (nd_max_pool2d is an
 * autograd op: see autograd/autograd.h.) */
ND_API nd_tensor *nd_avg_pool2d(nd_ctx *ctx, nd_tensor *x, int k, int stride);
/* Adaptive average pooling to 1x1: x (N, C, H, W) -> (N, C, 1, 1). */
ND_API nd_tensor *nd_global_avg_pool2d(nd_ctx *ctx, nd_tensor *x);
/* x (N, ...) -> (N, prod(...)). */
ND_API nd_tensor *nd_flatten(nd_ctx *ctx, nd_tensor *x);
/* nd_group_norm (the functional form of GroupNorm) is an autograd op: autograd/autograd.h. */
/* Batch normalisation of x (N, C) or (N, C, L) or (N, C, H, W) per channel (F.batch_norm).
 * training: normalise by the batch's statistics and, when running_mean / running_var are given
 * (persistent, (C,)), update them in place with momentum (unbiased variance). Otherwise normalise
 * by the running statistics. w, b (C,) may be NULL. */
ND_API nd_tensor *nd_batch_norm(nd_ctx *ctx, nd_tensor *x, nd_tensor *running_mean,
                                nd_tensor *running_var, nd_tensor *w, nd_tensor *b, bool training,
                                double momentum, double eps);
/* Inverted dropout: in training, zero each element with probability p and scale the rest by
 * 1 / (1 - p) (one draw of rng per element); otherwise x itself. */
ND_API nd_tensor *nd_dropout(nd_ctx *ctx, nd_tensor *x, double p, bool training, nd_rng *rng);

/* ---------------------------------------------------------------------------------------------
 * Layers as modules. Parameter names and shapes follow PyTorch's.
 */
typedef enum {
    ND_ACT_NONE,
    ND_ACT_TANH,
    ND_ACT_RELU,
    ND_ACT_SIGMOID,
    ND_ACT_SOFTPLUS
} nd_activation;

/* weight (out, in), bias (out,): PyTorch's default init, kaiming_uniform(a = sqrt(5)) which is
 * U(-1/sqrt(in), 1/sqrt(in)), and the bias U(-1/sqrt(in), 1/sqrt(in)). */
ND_API nd_module *nd_linear_create(nd_ctx *ctx, int in_features, int out_features, bool bias,
                                   nd_rng *rng);
/* weight (out_ch, in_ch, k, k), bias (out_ch,), PyTorch's default init with fan_in = in_ch k k. */
ND_API nd_module *nd_conv2d_create(nd_ctx *ctx, int in_ch, int out_ch, int k, int stride, int pad,
                                   bool bias, nd_rng *rng);
ND_API nd_module *nd_max_pool2d_create(nd_ctx *ctx, int k, int stride); /* stride 0: k */
ND_API nd_module *nd_avg_pool2d_create(nd_ctx *ctx, int k, int stride); /* stride 0: k */
ND_API nd_module *nd_global_avg_pool2d_create(nd_ctx *ctx);             /* AdaptiveAvgPool2d(1) */
/* weight (C,) ones, bias (C,) zeros; eps 1e-5 in PyTorch. */
ND_API nd_module *nd_group_norm_create(nd_ctx *ctx, int groups, int channels, double eps);
/* weight, bias (C,) as GroupNorm; buffers running_mean (C,) zeros and running_var (C,) ones.
 * PyTorch's defaults: eps 1e-5, momentum 0.1. BatchNorm1d takes (N, C) or (N, C, L),
 * BatchNorm2d (N, C, H, W). (num_batches_tracked is not kept: with a momentum it is unused.) */
ND_API nd_module *nd_batch_norm1d_create(nd_ctx *ctx, int channels, double eps, double momentum);
ND_API nd_module *nd_batch_norm2d_create(nd_ctx *ctx, int channels, double eps, double momentum);
ND_API nd_module *nd_flatten_create(nd_ctx *ctx);
/* p in [0, 1); the mask generator is seeded with seed and lives in the module. */
ND_API nd_module *nd_dropout_create(nd_ctx *ctx, double p, uint64_t seed);
ND_API nd_module *nd_activation_create(nd_ctx *ctx, nd_activation act); /* Tanh, ReLU, ... */

/* A container applying its children in order, named "0", "1", ... It takes ownership of the n
 * modules, also when it fails (then it destroys them). A NULL module (a failed create) makes it
 * fail, so a model can be built in one expression and checked once. n may be 0. */
ND_API nd_module *nd_sequential_create(nd_ctx *ctx, int n, nd_module *const *modules);
ND_API nd_status nd_sequential_append(nd_ctx *ctx, nd_module *seq, nd_module *child);
/* Linear(sizes[0], sizes[1]), act, Linear(sizes[1], sizes[2]), act, ..., Linear (no final act),
 * as a Sequential: names "0.weight", "2.weight", ... as torch.nn.Sequential. n_sizes >= 2. */
ND_API nd_module *nd_mlp_create(nd_ctx *ctx, int n_sizes, const int *sizes, nd_activation act,
                                nd_rng *rng);

/* ---------------------------------------------------------------------------------------------
 * Recurrent cells (nn/rnn.c): torch.nn.GRUCell and LSTMCell's equations, initialisation and
 * parameter names, composed from autograd ops (first- and second-order gradients come for free).
 * Inputs are batched: x (B, D), states h, c (B, H); weight_ih (G*H, D), weight_hh (G*H, H),
 * bias_ih, bias_hh (G*H,) or NULL, with the gates stacked in PyTorch's order: G = 3 for the GRU
 * (r, z, n), G = 4 for the LSTM (i, f, g, o).
 */
/* GRU: r = s(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r (W_hn h +
 * b_hn)), h' = (1 - z) n + z h. Returns h' (B, H). */
ND_API nd_tensor *nd_gru_cell(nd_ctx *ctx, nd_tensor *x, nd_tensor *h, nd_tensor *w_ih,
                              nd_tensor *w_hh, nd_tensor *b_ih, nd_tensor *b_hh);
/* LSTM: (i, f, g, o) = (s, s, tanh, s)(W_ih x + b_ih + W_hh h + b_hh), c' = f c + i g,
 * h' = o tanh(c'). Two outputs: returns h' (B, H) and writes c' (B, H) to *c_out (as
 * nd_odeint_tuple: the first output returned, all through the out-parameter placed last). On
 * failure returns NULL and sets *c_out to NULL; c_out must not be NULL. */
ND_API nd_tensor *nd_lstm_cell(nd_ctx *ctx, nd_tensor *x, nd_tensor *h, nd_tensor *c,
                               nd_tensor *w_ih, nd_tensor *w_hh, nd_tensor *b_ih, nd_tensor *b_hh,
                               nd_tensor **c_out);

/* The cells as modules: parameters "weight_ih" (G*H, D), "weight_hh" (G*H, H), and with bias
 * "bias_ih", "bias_hh" (G*H,), in that (state_dict) order, each U(-1/sqrt(H), 1/sqrt(H)) as
 * PyTorch's reset_parameters. Kinds "GRUCell" and "LSTMCell".
 * A cell carries a state besides its input, so it is stepped with nd_gru_cell_step /
 * nd_lstm_cell_step (which check that the module is of that kind: ND_ERR_ARG otherwise).
 * nd_module_forward(ctx, cell, x) runs one step from the zero state (PyTorch's cell(x) with the
 * state omitted) and returns h', so a cell also sits in a Sequential as an encoder of x. */
ND_API nd_module *nd_gru_cell_create(nd_ctx *ctx, int input_size, int hidden_size, bool bias,
                                     nd_rng *rng);
ND_API nd_module *nd_lstm_cell_create(nd_ctx *ctx, int input_size, int hidden_size, bool bias,
                                      nd_rng *rng);
/* h' = cell(x, h) with the module's parameters; m must be a GRUCell. */
ND_API nd_tensor *nd_gru_cell_step(nd_ctx *ctx, nd_module *m, nd_tensor *x, nd_tensor *h);
/* h' = cell(x, (h, c)), writing c' to *c_out (as nd_lstm_cell); m must be an LSTMCell. */
ND_API nd_tensor *nd_lstm_cell_step(nd_ctx *ctx, nd_module *m, nd_tensor *x, nd_tensor *h,
                                    nd_tensor *c, nd_tensor **c_out);
/* H of a GRUCell or LSTMCell module; 0 for any other module (or NULL). */
ND_API int nd_rnn_cell_hidden_size(const nd_module *m);

/* One masked step of a GRUCell or LSTMCell, what nd_rnn_sequence does at each step (and an
 * ODE-RNN at each observation): x (B, D), mask (B,) or (B, D) or NULL (all observed), h (B, H);
 * samples with a nonzero mask entry get cell(x, h), the others keep h bit for bit. Returns h'.
 * For an LSTMCell, c (B, H) is required and c' is written to *c_out (as nd_lstm_cell); for a
 * GRUCell, c must be NULL and c_out may be NULL (it is set to NULL). */
ND_API nd_tensor *nd_rnn_masked_step(nd_ctx *ctx, nd_module *cell, nd_tensor *x, nd_tensor *mask,
                                     nd_tensor *h, nd_tensor *c, nd_tensor **c_out);
/* Runs a GRUCell or LSTMCell over x (T, B, D) and returns the hidden states (T, B, H), row t
 * being the state after step t. mask (T, B) or (T, B, D), optional (NULL: all observed), tells
 * which values were observed: a sample counts as observed at step t when any of its mask entries
 * at t is nonzero. Observed samples take the cell's update; unobserved samples keep their state
 * (h, and c for an LSTM) unchanged, bit for bit: h_t = m cell(x_t, h_{t-1}) + (1 - m) h_{t-1}
 * per sample, as an exact selection (gradients flow to the selected branch only). x goes to the
 * cell as it is: to let the cell see the mask too, feed it as input channels (x, mask) as the
 * ODE-RNN does. h0 (B, H) and, for an LSTM only, c0 (B, H) are the initial state; NULL means
 * zeros. A step where no sample is observed costs no cell evaluation. */
ND_API nd_tensor *nd_rnn_sequence(nd_ctx *ctx, nd_module *cell, nd_tensor *x, nd_tensor *mask,
                                  nd_tensor *h0, nd_tensor *c0);

/* ---------------------------------------------------------------------------------------------
 * Losses (scalar results) and metrics.
 */
typedef enum { ND_REDUCE_MEAN, ND_REDUCE_SUM } nd_reduction;

/* (pred - target)^2 and |pred - target|, same shapes, reduced. */
ND_API nd_tensor *nd_mse_loss(nd_ctx *ctx, nd_tensor *pred, nd_tensor *target, nd_reduction r);
ND_API nd_tensor *nd_l1_loss(nd_ctx *ctx, nd_tensor *pred, nd_tensor *target, nd_reduction r);
/* -log_softmax(logits)[i, labels[i]] for logits (N, K) and labels (N,) in [0, K), reduced. */
ND_API nd_tensor *nd_cross_entropy(nd_ctx *ctx, nd_tensor *logits, const int *labels,
                                   nd_reduction r);
/* Variational losses (a VAE such as the latent ODE):
 * nd_gaussian_log_likelihood: the sum of mask * log N(target; mean, std^2) over all entries,
 * log N = -((target - mean) / std)^2 / 2 - log(std) - log(2 pi) / 2, with a fixed std > 0; mask
 * (same shape, constant, 0 or 1; NULL: all entries) leaves out unobserved entries. ND_REDUCE_MEAN
 * divides by the number of entries counted (sum of the mask; an error when it is 0).
 * nd_kl_std_normal: KL(N(mu, exp(logvar)) || N(0, I)) = sum (exp(logvar) + mu^2 - 1 - logvar) / 2
 * over mu, logvar (B, L); ND_REDUCE_SUM sums over everything, ND_REDUCE_MEAN averages the
 * per-sample KL (summed over L) over the B samples. */
ND_API nd_tensor *nd_gaussian_log_likelihood(nd_ctx *ctx, nd_tensor *mean, nd_tensor *target,
                                             const nd_tensor *mask, double std, nd_reduction r);
ND_API nd_tensor *nd_kl_std_normal(nd_ctx *ctx, nd_tensor *mu, nd_tensor *logvar, nd_reduction r);
/* Fraction of rows of logits (N, K) whose first maximal entry is at labels[i]; -1 on bad input. */
ND_API double nd_accuracy(const nd_tensor *logits, const int *labels);

/* ---------------------------------------------------------------------------------------------
 * Optimizers, with PyTorch's update rules and defaults (torch.optim, single-tensor form).
 * State lives in persistent tensors made at create: a step does no allocation.
 *
 * Non-finite gradients: unlike PyTorch, nd_optimizer_step first checks every gradient and, if any
 * element is NaN or infinite, returns ND_ERR_NONFINITE (naming the parameter) and leaves the
 * parameters and the optimizer state untouched.
 */
typedef struct {
    double lr;           /* 1e-3 (PyTorch >= 2.0's default) */
    double momentum;     /* 0 */
    double dampening;    /* 0 */
    double weight_decay; /* 0: L2 added to the gradient */
    bool nesterov;       /* false; needs momentum > 0 and dampening 0 */
} nd_sgd_options;
#define ND_SGD_DEFAULT ((nd_sgd_options){.lr = 1e-3})

typedef struct {
    double lr;           /* 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* Adam: 0, L2 added to the gradient; AdamW: 1e-2, decoupled */
    bool amsgrad;        /* false */
} nd_adam_options;
#define ND_ADAM_DEFAULT ((nd_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8})
#define ND_ADAMW_DEFAULT                                                                           \
    ((nd_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2})

typedef struct {
    double lr;           /* 1e-2 */
    double alpha;        /* 0.99: smoothing of the squared gradient */
    double eps;          /* 1e-8, added after the square root */
    double weight_decay; /* 0 */
    double momentum;     /* 0 */
    bool centered;       /* false */
} nd_rmsprop_options;
#define ND_RMSPROP_DEFAULT ((nd_rmsprop_options){.lr = 1e-2, .alpha = 0.99, .eps = 1e-8})

typedef struct nd_optimizer nd_optimizer;

/* The optimizer keeps the tensors of params (not owned) and copies their names. opts NULL means
 * the defaults (ND_SGD_DEFAULT, ND_ADAM_DEFAULT, ND_ADAMW_DEFAULT for nd_adamw_create,
 * ND_RMSPROP_DEFAULT); the options are copied. NULL with ND_ERR_ARG for a bad option. */
ND_API nd_optimizer *nd_sgd_create(nd_ctx *ctx, const nd_param *params, int n,
                                   const nd_sgd_options *opts);
ND_API nd_optimizer *nd_adam_create(nd_ctx *ctx, const nd_param *params, int n,
                                    const nd_adam_options *opts);
ND_API nd_optimizer *nd_adamw_create(nd_ctx *ctx, const nd_param *params, int n,
                                     const nd_adam_options *opts);
ND_API nd_optimizer *nd_rmsprop_create(nd_ctx *ctx, const nd_param *params, int n,
                                       const nd_rmsprop_options *opts);
ND_API void nd_optimizer_destroy(nd_optimizer *opt);

/* One update from the parameters' .grad. Errors go to ctx (which may differ from create's). */
ND_API nd_status nd_optimizer_step(nd_ctx *ctx, nd_optimizer *opt);
ND_API void nd_optimizer_zero_grad(nd_optimizer *opt);
ND_API double nd_optimizer_lr(const nd_optimizer *opt);
ND_API void nd_optimizer_set_lr(nd_optimizer *opt, double lr);
ND_API long nd_optimizer_steps(const nd_optimizer *opt); /* steps taken */
/* The state as named persistent tensors, for checkpoints: "step" (a scalar), then per parameter
 * "<param>.momentum_buffer" (SGD, RMSprop with momentum), "<param>.exp_avg", ".exp_avg_sq",
 * ".max_exp_avg_sq" (Adam/W), "<param>.square_avg", ".grad_avg" (RMSprop). Owned by the
 * optimizer; loading values into them (and into "step") restores the optimizer. */
ND_API const nd_param *nd_optimizer_state(const nd_optimizer *opt, int *n);

/* Scales the gradients of params so that their global 2-norm is at most max_norm
 * (torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6)) and returns the norm
 * before clipping. A non-finite norm is returned with the gradients left untouched. */
ND_API double nd_clip_grad_norm(const nd_param *params, int n, double max_norm);

/* ---------------------------------------------------------------------------------------------
 * Learning-rate schedules: the rate for an epoch (the number of scheduler steps taken), in
 * closed form. Set it with nd_optimizer_set_lr.
 */
typedef enum { ND_LR_CONSTANT, ND_LR_STEP, ND_LR_COSINE } nd_lr_kind;
typedef struct {
    nd_lr_kind kind;
    double base_lr;
    int step_size; /* STEP: lr = base_lr * gamma^(epoch / step_size) (StepLR) */
    double gamma;
    int t_max;      /* COSINE: eta_min + (base_lr - eta_min) (1 + cos(pi epoch / t_max)) / 2 */
    double eta_min; /* (CosineAnnealingLR) */
} nd_lr_schedule;

ND_API nd_lr_schedule nd_lr_step(double base_lr, int step_size, double gamma);
ND_API nd_lr_schedule nd_lr_cosine(double base_lr, int t_max, double eta_min);
ND_API double nd_lr_at(const nd_lr_schedule *s, int epoch);

#ifdef __cplusplus
}
#endif

#endif /* ND_NN_H */
