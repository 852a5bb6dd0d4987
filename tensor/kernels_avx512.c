/* SPDX-License-Identifier: MIT
 * tensor/kernels_avx512.c: tanh and exp over arrays with SLEEF's AVX-512F kernels, twice the lanes
 * of kernels_avx2.c. Both files call SLEEF's deterministic ("finz") kernels, which give bitwise
 * the same results whatever the vector width, so a run's numbers do not depend on which one the
 * CPU gets. Compiled with -mavx512f and called only after kernels.c has checked the CPU; the tail
 * that does not fill a vector goes through a zero-padded vector too. */
#include <immintrin.h>
#include <sleef.h>

#include "tensor/tensor.h"

#ifdef ND_REAL_FLOAT
#define LANES 16
#define VEC __m512
#define LOAD _mm512_loadu_ps
#define STORE _mm512_storeu_ps
#define VTANH Sleef_tanhf16_u35avx512f
#define VEXP Sleef_expf16_u10avx512f
#else
#define LANES 8
#define VEC __m512d
#define LOAD _mm512_loadu_pd
#define STORE _mm512_storeu_pd
#define VTANH Sleef_tanhd8_u35avx512f
#define VEXP Sleef_expd8_u10avx512f
#endif

#include "tensor/kernels_array.h"

ARRAY_KERNEL(nd_kernel_tanh_avx512, VTANH)
ARRAY_KERNEL(nd_kernel_exp_avx512, VEXP)
