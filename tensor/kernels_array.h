/* SPDX-License-Identifier: MIT
 * tensor/kernels_array.h: ARRAY_KERNEL(name, vfn), an array kernel y (n,) = vfn(x) over vectors of
 * LANES values, the tail that does not fill a vector through a zero-padded vector (so every
 * element takes the same path). Included by the SIMD kernel files (kernels_avx2.c,
 * kernels_avx512.c) after they define LANES, LOAD and STORE for their vector width.
 * Library-private. */
#ifndef ND_KERNELS_ARRAY_H
#define ND_KERNELS_ARRAY_H

#include <string.h>

#include "tensor/tensor.h"

#define ARRAY_KERNEL(name, vfn)                                                                    \
    void name(nd_real *y, const nd_real *x, size_t n)                                              \
    {                                                                                              \
        size_t i = 0;                                                                              \
        for (; i + LANES <= n; i += LANES) STORE(y + i, vfn(LOAD(x + i)));                         \
        if (i < n) {                                                                               \
            nd_real buf[LANES] = {0};                                                              \
            memcpy(buf, x + i, (n - i) * sizeof *buf);                                             \
            STORE(buf, vfn(LOAD(buf)));                                                            \
            memcpy(y + i, buf, (n - i) * sizeof *buf);                                             \
        }                                                                                          \
    }

#endif
