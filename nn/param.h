/* SPDX-License-Identifier: MIT
 * nn/param.h: a named tensor, the unit shared by modules (which list their parameters),
 * optimizers (which update them) and checkpoints (which save and load them by name). */
#ifndef ND_NN_PARAM_H
#define ND_NN_PARAM_H

#include "tensor/tensor.h"

typedef struct {
    const char *name;  /* e.g. "0.weight"; owned by whoever made the list */
    nd_tensor *tensor; /* persistent; not owned by the list */
} nd_param;

#endif
