/* SPDX-License-Identifier: MIT
 * examples/common/ckpt.h: the list of named tensors a program checkpoints, gathered from several
 * modules and optimizers under name prefixes ("latent." + "encoder.cell.weight_ih",
 * "optim.latent." + "step", ...), for nd_save / nd_checkpoint_load (io/io.h). Not part of the
 * library.
 */
#ifndef CKPT_H
#define CKPT_H

#include "nodal.h"

typedef struct {
    nd_param *items; /* (n,) names owned by the list, tensors not */
    int n;
} ckpt_list;

/* Appends items[0 .. n-1] under prefix + name; 0, or -1 with ND_ERR_NOMEM in ctx (the list
 * keeps what it had). */
int ckpt_list_add(nd_ctx *ctx, ckpt_list *l, const char *prefix, const nd_param *items, int n);
void ckpt_list_free(ckpt_list *l);

#endif
