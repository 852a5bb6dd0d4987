/* SPDX-License-Identifier: MIT
 * tensor/kernels_avx2.c: tanh and exp over arrays with SLEEF's AVX2 kernels: tanh to 3.5 ulp
 * (twice as fast as the 1-ulp kernel, and tanh dominates small models), exp to 1 ulp.
 * Compiled with -mavx2 -mfma and called only after kernels.c has checked the CPU. The tail that
 * does not fill a vector goes through a zero-padded vector too, so every element takes the same
 * path. */
#include <immintrin.h>
#include <sleef.h>

#include "tensor/tensor.h"

#ifdef ND_REAL_FLOAT
#define LANES 8
#define VEC __m256
#define LOAD _mm256_loadu_ps
#define STORE _mm256_storeu_ps
#define VTANH Sleef_tanhf8_u35avx2
#define VEXP Sleef_expf8_u10avx2
#else
#define LANES 4
#define VEC __m256d
#define LOAD _mm256_loadu_pd
#define STORE _mm256_storeu_pd
#define VTANH Sleef_tanhd4_u35avx2
#define VEXP Sleef_expd4_u10avx2
#endif

#include "tensor/kernels_array.h"

ARRAY_KERNEL(nd_kernel_tanh_avx2, VTANH)
ARRAY_KERNEL(nd_kernel_exp_avx2, VEXP)
