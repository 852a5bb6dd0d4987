/* SPDX-License-Identifier: MIT
 * autograd/registry.c: the one table from op id to name, number of inputs and backward rule,
 * generated from ND_OP_LIST so an op cannot be listed without a rule. */
#include "autograd/ops_internal.h"

const nd_op_info nd_ops[ND_OP_COUNT] = {[ND_OP_NONE] = {"leaf", 0, NULL},
#define ND_X_OP(id, op_name, n) [ND_OP_##id] = {op_name, n, nd_##id##_backward_rule},
                                        ND_OP_LIST(ND_X_OP)
#undef ND_X_OP
};

void nd_CUSTOM_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_custom_backward(ctx, out);
}
