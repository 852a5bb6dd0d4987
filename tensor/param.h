/* SPDX-License-Identifier: MIT
 * tensor/param.h: a named tensor, the unit shared by modules (nn/, which list their parameters),
 * optimizers (nn/, which update them) and checkpoints (io/, which save and load them by name).
 * It lives beside the tensor so that io/ and nn/ both see it while io depends on tensor only
 * (io -> tensor, nn -> ... -> tensor; io and nn never include each other).
 */
#ifndef ND_TENSOR_PARAM_H
#define ND_TENSOR_PARAM_H

#include "tensor/tensor.h"

typedef struct {
    const char *name;  /* e.g. "0.weight"; owned by whoever made the list */
    nd_tensor *tensor; /* persistent; not owned by the list */
} nd_param;

#endif
