/* SPDX-License-Identifier: MIT
 * examples/common/ckpt.c: a checkpoint's list of tensors under name prefixes (see ckpt.h).
 */
#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ckpt_list_add(nd_ctx *ctx, ckpt_list *l, const char *prefix, const nd_param *items, int n)
{
    nd_param *grown = realloc(l->items, (size_t)(l->n + n + 1) * sizeof *grown);
    if (!grown) return nd_fail(ctx, ND_ERR_NOMEM, "ckpt_list_add: out of memory"), -1;
    l->items = grown;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(prefix) + strlen(items[i].name) + 1;
        char *name = malloc(len);
        if (!name) return nd_fail(ctx, ND_ERR_NOMEM, "ckpt_list_add: out of memory"), -1;
        snprintf(name, len, "%s%s", prefix, items[i].name);
        l->items[l->n++] = (nd_param){.name = name, .tensor = items[i].tensor};
    }
    return 0;
}

void ckpt_list_free(ckpt_list *l)
{
    for (int i = 0; i < l->n; i++) free((char *)l->items[i].name);
    free(l->items);
    l->items = NULL, l->n = 0;
}
