/* SPDX-License-Identifier: MIT
 * io/idx_internal.h: private to io/. The IDX reader with the caller's function name, so errors
 * from nd_dataset_load_idx name the function the user called. */
#ifndef ND_IO_IDX_INTERNAL_H
#define ND_IO_IDX_INTERNAL_H

#include "io/io.h"

nd_status nd_idx_read_as(nd_ctx *ctx, const char *fn, const char *path, int ndim_expected,
                         nd_idx *out);

#endif
