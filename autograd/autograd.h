/* SPDX-License-Identifier: MIT
 * autograd/autograd.h: differentiable ops and reverse-mode differentiation.
 *
 * Every op computes eagerly and, when grad mode is on and an input requires grad, records itself
 * on its output (op, src). Each op's backward rule sits below its forward in the same file and is
 * built from these same ops, so a gradient taken with ND_CREATE_GRAPH is itself a graph that can be
 * differentiated again (Hessian-vector products, a VJP inside ODE dynamics).
 *
 * Ops return arena-owned tensors, or NULL with the first error recorded in the ctx; given a NULL
 * input they return NULL at once, recording "nd_add: input b is NULL" unless an earlier error
 * explains the NULL (and a NULL ctx is no crash: NULL back). Messages name the op and print
 * shapes:
 *   nd_matmul: inner dimensions differ: a (32, 784) @ b (128, 10)
 */
#ifndef ND_AUTOGRAD_H
#define ND_AUTOGRAD_H

#include "tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * The op registry: one list gives the op ids; autograd/registry.c maps each to its name, number
 * of inputs (-1: variable) and backward rule. A test walks it, so no op lacks a backward.
 */
#define ND_OP_LIST(X)                                                                              \
    X(ADD, "add", 2)                                                                               \
    X(SUB, "sub", 2)                                                                               \
    X(MUL, "mul", 2)                                                                               \
    X(DIV, "div", 2)                                                                               \
    X(NEG, "neg", 1)                                                                               \
    X(ADD_SCALAR, "add_scalar", 1)                                                                 \
    X(MUL_SCALAR, "mul_scalar", 1)                                                                 \
    X(POW_SCALAR, "pow_scalar", 1)                                                                 \
    X(EXP, "exp", 1)                                                                               \
    X(LOG, "log", 1)                                                                               \
    X(SQRT, "sqrt", 1)                                                                             \
    X(ABS, "abs", 1)                                                                               \
    X(SIN, "sin", 1)                                                                               \
    X(COS, "cos", 1)                                                                               \
    X(TANH, "tanh", 1)                                                                             \
    X(TANH_BACKWARD, "tanh_backward", 2)                                                           \
    X(SIGMOID, "sigmoid", 1)                                                                       \
    X(RELU, "relu", 1)                                                                             \
    X(SOFTPLUS, "softplus", 1)                                                                     \
    X(MATMUL, "matmul", 2)                                                                         \
    X(TRANSPOSE, "transpose", 1)                                                                   \
    X(RESHAPE, "reshape", 1)                                                                       \
    X(EXPAND, "expand", 1)                                                                         \
    X(SUM_TO, "sum_to", 1)                                                                         \
    X(SUM, "sum", 1)                                                                               \
    X(SUM_AXIS, "sum_axis", 1)                                                                     \
    X(MAX_AXIS, "max_axis", 1)                                                                     \
    X(LOG_SOFTMAX, "log_softmax", 1)                                                               \
    X(CONCAT, "concat", -1)                                                                        \
    X(SLICE, "slice", 1)                                                                           \
    X(PAD, "pad", 1)                                                                               \
    X(LINCOMB, "lincomb", -1)                                                                      \
    X(IM2COL, "im2col", 1)                                                                         \
    X(COL2IM, "col2im", 1)                                                                         \
    X(CONV2D, "conv2d", -1)                                                                        \
    X(GROUP_NORM, "group_norm", -1)                                                                \
    X(MAX_POOL2D, "max_pool2d", 1)                                                                 \
    X(LINEAR, "linear", -1)                                                                        \
    X(CUSTOM, "custom", -1)

typedef enum {
    ND_OP_NONE = 0, /* a leaf */
#define ND_X_OP(id, name, n_src) ND_OP_##id,
    ND_OP_LIST(ND_X_OP)
#undef ND_X_OP
        ND_OP_COUNT
} nd_op;

/* The rule that, given out->gnode (dL/dout), adds dL/dsrc to each src that requires grad through
 * nd_accumulate_grad, using differentiable ops. */
typedef void (*nd_backward_fn)(nd_ctx *ctx, nd_tensor *out);

typedef struct {
    const char *name;
    int n_src; /* -1: variable */
    nd_backward_fn backward;
} nd_op_info;

ND_API extern const nd_op_info nd_ops[ND_OP_COUNT];

/* ---------------------------------------------------------------------------------------------
 * Gradients.
 */
enum {
    ND_CREATE_GRAPH = 1, /* nd_grad: record the gradient's graph, so it can be differentiated */
    ND_ALLOW_UNUSED = 2, /* nd_grad: an input the outputs do not reach gets zeros, not an error */
    ND_RETAIN_GRAPH = 4  /* nd_backward: keep the graph usable for another nd_backward */
};

/* Accumulates dloss/dx into .grad of every leaf x that requires grad and is reached from loss
 * (persistent tensors own .grad; an arena leaf gets an arena .grad). loss must have size 1
 * (ND_ERR_SHAPE otherwise). flags: 0 or ND_RETAIN_GRAPH (ND_ALLOW_UNUSED has no effect here;
 * ND_CREATE_GRAPH is ND_ERR_ARG: .grad holds values; use nd_grad for a differentiable gradient).
 * The graph is consumed: a second nd_backward (or nd_grad) through any of its op nodes is
 * ND_ERR_GRAPH, as in PyTorch, unless the earlier call passed ND_RETAIN_GRAPH. Leaves
 * (parameters) are shared between graphs and are never consumed.
 * All-or-nothing: when it fails (an odeint adjoint that fails, say) every .grad is as it was
 * before the call and the graph is not consumed. (One exception: the arena failing to grow in
 * the built-in rules after the last custom op's rule, ND_ERR_NOMEM, can leave .grad partial.)
 * Returns ND_OK or the error (also in the ctx). */
ND_API nd_status nd_backward(nd_ctx *ctx, nd_tensor *loss, unsigned flags);

/* Vector-Jacobian products: grads_out[j] = sum_i seeds[i]^T d outputs[i] / d inputs[j], without
 * touching .grad (torch.autograd.grad). seeds may be NULL (ones) or hold NULL entries.
 * An input the outputs do not reach (or that does not require grad) is ND_ERR_GRAPH naming its
 * index, unless flags has ND_ALLOW_UNUSED: then it gets zeros. With ND_CREATE_GRAPH the results
 * are recorded and differentiable. nd_grad never consumes the graph (ND_RETAIN_GRAPH is implied).
 * On failure every grads_out[j] is NULL. */
ND_API nd_status nd_grad(nd_ctx *ctx, nd_tensor **outputs, nd_tensor **seeds, int n_out,
                         nd_tensor **inputs, int n_in, nd_tensor **grads_out, unsigned flags);

/* For backward rules: whether the running sweep needs x's gradient (x leads to an input asked
 * for); rules test it before computing a gradient. */
ND_API bool nd_needs_grad(const nd_ctx *ctx, const nd_tensor *x);
/* For backward rules: x's .grad when the running rule may add x's gradient straight into it (a
 * parameter under nd_backward, once no custom rule that could still fail remains), so a rule
 * may accumulate there itself; NULL otherwise. */
ND_API nd_real *nd_direct_grad(const nd_ctx *ctx, const nd_tensor *x);
/* For backward rules: adds g to x's pending gradient when the sweep needs it. */
ND_API void nd_accumulate_grad(nd_ctx *ctx, nd_tensor *x, nd_tensor *g);

/* For op implementations: records op on out with the given inputs when grad mode is on and an
 * input requires grad; returns out. */
ND_API nd_tensor *nd_record(nd_ctx *ctx, nd_tensor *out, nd_op op, int n_src,
                            nd_tensor *const *src);

/* A custom op (nodal's odeint is one): backward(ctx, out, state) must accumulate into the srcs
 * like any rule, and reports a failure by recording it in ctx (nd_fail). It may fail: the engine
 * keeps every gradient away from .grad until the custom rules of a sweep have all succeeded.
 * state lives in the arena or is owned by the caller. */
typedef struct {
    const char *name;
    void (*backward)(nd_ctx *ctx, nd_tensor *out, void *state);
    void *state;
} nd_custom_op;
ND_API nd_tensor *nd_record_custom(nd_ctx *ctx, nd_tensor *out, const nd_custom_op *op, int n_src,
                                   nd_tensor *const *src);

/* ---------------------------------------------------------------------------------------------
 * Elementwise with NumPy broadcasting (shapes aligned on the right; a dim of 1 stretches).
 */
ND_API nd_tensor *nd_add(nd_ctx *ctx, nd_tensor *a, nd_tensor *b);
ND_API nd_tensor *nd_sub(nd_ctx *ctx, nd_tensor *a, nd_tensor *b);
ND_API nd_tensor *nd_mul(nd_ctx *ctx, nd_tensor *a, nd_tensor *b);
ND_API nd_tensor *nd_div(nd_ctx *ctx, nd_tensor *a, nd_tensor *b);
/* sum_i coef[i] * xs[i] over n tensors of one shape (no broadcasting): one pass, one op. */
ND_API nd_tensor *nd_lincomb(nd_ctx *ctx, nd_tensor *const *xs, const nd_real *coef, int n);
/* x broadcast to shape (x's dims must be 1 or equal, aligned on the right). */
ND_API nd_tensor *nd_expand(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape);
/* The sum of x over the dims that broadcasting stretched, so the result has shape (the inverse
 * of nd_expand). */
ND_API nd_tensor *nd_sum_to(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape);

/* Elementwise, one input. */
ND_API nd_tensor *nd_neg(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_add_scalar(nd_ctx *ctx, nd_tensor *x, nd_real c);
ND_API nd_tensor *nd_mul_scalar(nd_ctx *ctx, nd_tensor *x, nd_real c);
ND_API nd_tensor *nd_pow_scalar(nd_ctx *ctx, nd_tensor *x, nd_real p);
ND_API nd_tensor *nd_exp(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_log(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_sqrt(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_abs(nd_ctx *ctx, nd_tensor *x); /* gradient 0 at 0, as PyTorch */
ND_API nd_tensor *nd_sin(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_cos(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_tanh(nd_ctx *ctx, nd_tensor *x);
/* dout * (1 - y^2) for y = tanh(x): tanh's backward as one fused, differentiable op. */
ND_API nd_tensor *nd_tanh_backward(nd_ctx *ctx, nd_tensor *y, nd_tensor *dout);
ND_API nd_tensor *nd_sigmoid(nd_ctx *ctx, nd_tensor *x);
/* relu(NaN) = NaN and the gradient passes at NaN, as PyTorch; gradient 0 at 0 */
ND_API nd_tensor *nd_relu(nd_ctx *ctx, nd_tensor *x);
ND_API nd_tensor *nd_softplus(nd_ctx *ctx, nd_tensor *x); /* log(1 + e^x), computed stably */

/* ---------------------------------------------------------------------------------------------
 * Linear algebra and shapes.
 */
/* a (M, K) @ b (K, N) -> (M, N); batched: a (B, M, K) @ b (B, K, N) -> (B, M, N); and
 * a (B, M, K) @ b (K, N) -> (B, M, N) with b shared. Through cblas GEMM. */
ND_API nd_tensor *nd_matmul(nd_ctx *ctx, nd_tensor *a, nd_tensor *b);
/* op(a) @ op(b) where op transposes the last two dims when its flag is set (no copy). */
ND_API nd_tensor *nd_matmul_t(nd_ctx *ctx, nd_tensor *a, nd_tensor *b, bool trans_a, bool trans_b);
/* The affine map of a Linear layer (autograd/ops_linear.c): x (..., in) @ w (out, in)^T + b (out,)
 * -> (..., out); x 2-D or 3-D; b may be NULL. One op (inputs x, w and b when given): the bias is
 * written first and the GEMM adds to it; the backward is two GEMMs and a column sum. */
ND_API nd_tensor *nd_linear(nd_ctx *ctx, nd_tensor *x, nd_tensor *w, nd_tensor *b);
/* Swaps the last two dims (a 2-D transpose; batched for 3-D and 4-D). */
ND_API nd_tensor *nd_transpose(nd_ctx *ctx, nd_tensor *x);
/* Same data, new shape of the same size; one dim may be -1 (inferred). */
ND_API nd_tensor *nd_reshape(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape);
/* Joins n tensors along axis; the other dims must agree. */
ND_API nd_tensor *nd_concat(nd_ctx *ctx, nd_tensor *const *xs, int n, int axis);
/* x[..., start:start+len, ...] along axis. */
ND_API nd_tensor *nd_slice(nd_ctx *ctx, nd_tensor *x, int axis, int start, int len);
/* Zeros of size full along axis with x placed at start (slice's inverse, its backward). */
ND_API nd_tensor *nd_pad(nd_ctx *ctx, nd_tensor *x, int axis, int start, int full);

/* ---------------------------------------------------------------------------------------------
 * Sliding windows over images (autograd/ops_conv.c): the pair under convolution and pooling.
 */
typedef struct {
    int kh, kw; /* window (kernel) height and width, >= 1 */
    int sh, sw; /* strides, >= 1 */
    int ph, pw; /* zero padding on each side, >= 0 */
} nd_window2d;

/* x (N, C, H, W) -> rows (N*OH*OW, C*kh*kw): one row per output position (n, oh, ow), holding the
 * zero-padded receptive field in (c, i, j) order, so a conv weight (OC, C, kh, kw) viewed as
 * (OC, C*kh*kw) multiplies it directly. OH = (H + 2 ph - kh) / sh + 1, likewise OW. */
ND_API nd_tensor *nd_im2col(nd_ctx *ctx, nd_tensor *x, nd_window2d w);
/* The adjoint of nd_im2col: rows (N*OH*OW, C*kh*kw) summed back into an (N, C, H, W) image given
 * by shape (4 ints); overlapping windows add, padding is dropped. Each is the other's backward. */
ND_API nd_tensor *nd_col2im(nd_ctx *ctx, nd_tensor *rows, const int *shape, nd_window2d w);
/* Convolution (autograd/ops_conv2d.c): x (N, C, H, W) * w (OC, C, kh, kw) + b (OC,) ->
 * (N, OC, OH, OW), OH = (H + 2 pad - kh) / stride + 1, likewise OW; b may be NULL. One op (inputs
 * x, w and b when given) whose im2col stays in cache, tile by tile, feeding GEMM directly. */
ND_API nd_tensor *nd_conv2d(nd_ctx *ctx, nd_tensor *x, nd_tensor *w, nd_tensor *b, int stride,
                            int pad);
/* Group normalisation (autograd/ops_norm.c) of x (N, C, ...) over groups of C/groups channels
 * (biased variance, eps >= 0), then the per-channel affine w (C,), b (C,) (both may be NULL).
 * One op (inputs x, then w and b when given), forward and backward one sweep per group. */
ND_API nd_tensor *nd_group_norm(nd_ctx *ctx, nd_tensor *x, int groups, nd_tensor *w, nd_tensor *b,
                                double eps);
/* Max pooling (autograd/ops_pool.c) of x (N, C, H, W) over k x k windows at the given stride, no
 * padding: (N, C, (H - k) / stride + 1, (W - k) / stride + 1). One pass, no im2col copy; the
 * gradient goes to the first maximum of each window (the first NaN wins, as torch.max). */
ND_API nd_tensor *nd_max_pool2d(nd_ctx *ctx, nd_tensor *x, int k, int stride);

/* ---------------------------------------------------------------------------------------------
 * Reductions. Negative axes count from the end.
 */
ND_API nd_tensor *nd_sum(nd_ctx *ctx, nd_tensor *x);  /* all elements -> scalar */
ND_API nd_tensor *nd_mean(nd_ctx *ctx, nd_tensor *x); /* all elements -> scalar */
ND_API nd_tensor *nd_sum_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim);
ND_API nd_tensor *nd_mean_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim);
/* The maximum along axis; the gradient goes to the first maximal element, as PyTorch. A NaN in
 * a reduced line makes its maximum NaN (max(1, NaN, 2) = NaN) and takes the gradient (the first
 * NaN), as torch.max(x, dim). */
ND_API nd_tensor *nd_max_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim);
/* x - logsumexp(x) along axis, computed stably. */
ND_API nd_tensor *nd_log_softmax(nd_ctx *ctx, nd_tensor *x, int axis);

#ifdef __cplusplus
}
#endif

#endif /* ND_AUTOGRAD_H */
